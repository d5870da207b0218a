# shellcheck shell=sh
run_all() {
    sg_persist -n -i -k $SG1
    sg_persist -n -o -G -S 0x1111 $SG1; echo rc=$?
    sg_persist -n -i -k $SG1
    sg_persist -n -o -R -K 0x1111 -T 1 $SG1; echo rc=$?
    sg_persist -n -i -r $SG3
    sg_persist -n -o -G -S 0x3333 $SG3; echo rc=$?
    sg_persist -n -i -s $SG3
    sg_persist -n -o -R -K 0x3333 -T 1 $SG3; echo rc=$?
    sg_turs $SG3; echo turs=$?
    sg_persist -n -i -r $SG3; echo rc=$?
    sg_persist -n -i -c $SG3; echo rc=$?
    c-pr-helper -k /run/c.sock -u nobody -g nogroup & sleep 1; ls -la /run; cat /proc/$!/status | grep -i cap
}
