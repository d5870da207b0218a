# shellcheck shell=dash disable=SC3043
# shellcheck disable=SC2034,SC2154
# The sid stage's PR ioctl executor against SG_IO on LU E (sourced by
# guest/sid.sh, after sid.helpers).

sid_prioctl() {
    :
}
