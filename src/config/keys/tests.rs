// SPDX-License-Identifier: GPL-2.0-or-later
//! The key list against the parser: what the man page says is what the
//! daemon reads.

use std::collections::BTreeSet;

use clap::Parser;
use serde::de::{self, Deserialize, Deserializer, Visitor};

use super::*;
use crate::config::cli::Cli;
use crate::config::{
    ConfigFile, ExecutorKind, ExecutorTable, FaultEntry, LogFormat, LogTo, SeccompMode,
    SecurityTable, Settings, SocketSource,
};
use crate::domain::audit::KeyDisplay;
use crate::domain::pr_ioctl::request::AptplZero;
use crate::domain::reservation::InitiatorIdentity;

/// A deserializer that answers nothing and only notes the names serde's
/// derive hands it: a struct's field names or an enum's variant names, as
/// the parser spells them.
struct Names<'a>(&'a mut Vec<&'static str>);

impl<'de> Deserializer<'de> for Names<'_> {
    type Error = de::value::Error;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
        Err(de::Error::custom("names only"))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        fields: &'static [&'static str],
        _: V,
    ) -> Result<V::Value, Self::Error> {
        self.0.extend(fields);
        Err(de::Error::custom("names only"))
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _: &'static str,
        variants: &'static [&'static str],
        _: V,
    ) -> Result<V::Value, Self::Error> {
        self.0.extend(variants);
        Err(de::Error::custom("names only"))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map identifier ignored_any
    }
}

/// The names `T`'s derived `Deserialize` reads.
fn names<T: for<'de> Deserialize<'de>>() -> BTreeSet<&'static str> {
    let mut names = Vec::new();
    let _ = T::deserialize(Names(&mut names));
    names.into_iter().collect()
}

/// A file that sets `key` to `value` (and, in an `[[executor.fault]]`, the
/// entry's other required keys; with `initiator`, the emulated device it is
/// read by).
fn file_setting(key: &Key, value: &str) -> String {
    match key.table {
        "executor" if key.name == "initiator" => format!("{}initiator = {value}\n", context(key)),
        "" => format!("{} = {value}\n", key.name),
        "executor.fault" => {
            let mut entry = vec![
                ("path", "\"/dev/null\"".to_string()),
                ("fault", "\"eio\"".to_string()),
            ];
            entry.retain(|(name, _)| *name != key.name);
            entry.push((key.name, value.to_string()));
            let lines: Vec<String> = entry.iter().map(|(k, v)| format!("{k} = {v}")).collect();
            format!("[[executor.fault]]\n{}\n", lines.join("\n"))
        }
        table => format!("[{table}]\n{} = {value}\n", key.name),
    }
}

/// What `key` needs around it to mean anything: `initiator` is read by the
/// emulated device only.
fn context(key: &Key) -> &'static str {
    match key.name {
        "initiator" => "[executor]\nkind = \"emulated\"\n",
        _ => "",
    }
}

/// Whether the parser takes `key = value`.
fn accepts(key: &Key, value: &str) -> bool {
    ConfigFile::parse(&file_setting(key, value)).is_ok()
}

#[test]
fn every_key_the_parser_reads_is_listed_and_no_other() {
    let mut parsed = BTreeSet::new();
    let tables = ["executor", "security"];
    for name in names::<ConfigFile>() {
        if !tables.contains(&name) {
            parsed.insert(("", name));
        }
    }
    for name in names::<ExecutorTable>() {
        if name != "fault" {
            parsed.insert(("executor", name));
        }
    }
    for name in names::<FaultEntry>() {
        parsed.insert(("executor.fault", name));
    }
    for name in names::<SecurityTable>() {
        parsed.insert(("security", name));
    }
    // The introspection itself works: a key known to exist is seen.
    assert!(parsed.contains(&("security", "max_commands_per_peer")));
    let listed: BTreeSet<(&str, &str)> = keys().iter().map(|k| (k.table, k.name)).collect();
    assert_eq!(keys().len(), listed.len(), "a key is listed twice");
    assert_eq!(
        listed, parsed,
        "the key list (and so qemu-pr-helper.toml(5)) differs from what the parser reads"
    );
}

#[test]
fn choices_are_the_parsers() {
    let variants = [
        ("kind", names::<ExecutorKind>()),
        ("log_format", names::<LogFormat>()),
        ("log_to", names::<LogTo>()),
        ("seccomp", names::<SeccompMode>()),
        ("audit_keys", names::<KeyDisplay>()),
        ("aptpl_zero", names::<AptplZero>()),
        ("initiator", names::<InitiatorIdentity>()),
    ];
    for key in keys().iter().filter(|k| !k.choices.is_empty()) {
        for choice in key.choices {
            let value = format!("\"{}\"", choice.replace(":N", ":7"));
            assert!(accepts(key, &value), "{} = {value} refused", key.name);
        }
        assert!(!accepts(key, "\"no_such_choice\""), "{}", key.name);
        if let Some((_, parsed)) = variants.iter().find(|(name, _)| *name == key.name) {
            let listed: BTreeSet<&str> = key.choices.iter().copied().collect();
            assert_eq!(&listed, parsed, "the choices of {}", key.name);
        }
    }
    // Every key that takes one of a few strings lists them.
    for (name, _) in &variants {
        assert!(
            keys()
                .iter()
                .any(|k| k.name == *name && !k.choices.is_empty()),
            "{name}"
        );
    }
}

#[test]
fn bounds_are_the_parsers() {
    let mut checked = 0;
    for key in keys() {
        let Some((low, high)) = key.bounds else {
            continue;
        };
        assert!(accepts(&key, &low.to_string()), "{} = {low}", key.name);
        assert!(accepts(&key, &high.to_string()), "{} = {high}", key.name);
        assert!(
            !accepts(&key, &(low - 1).to_string()),
            "{} = {}",
            key.name,
            low - 1
        );
        // TOML's integers end at i64::MAX: beyond, nothing can be written.
        if high < TOML_MAX {
            assert!(!accepts(&key, &(high + 1).to_string()), "{}", key.name);
        }
        checked += 1;
    }
    assert!(checked >= 7, "{checked}");
    // Every integer key has its bounds listed.
    for key in keys().iter().filter(|k| k.kind == "integer") {
        assert!(key.bounds.is_some(), "{}", key.name);
    }
}

#[test]
fn examples_are_accepted_and_set_something() {
    for key in keys() {
        let file = file_setting(&key, key.example);
        let parsed = ConfigFile::parse(&file).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_ne!(parsed, ConfigFile::default(), "{file}");
    }
}

#[test]
fn a_default_is_what_an_absent_key_gets() {
    let cli = || Cli::parse_from(["qemu-pr-helper"]);
    let settings = |file: ConfigFile| {
        let mut s = Settings::new(file, cli()).unwrap();
        // Where the socket path came from is not what it is.
        s.socket_source = SocketSource::Default;
        s
    };
    let mut checked = 0;
    for key in keys() {
        let KeyDefault::Value(value) = &key.default else {
            continue;
        };
        let absent = settings(ConfigFile::parse(context(&key)).unwrap());
        let file = file_setting(&key, value);
        let parsed = ConfigFile::parse(&file).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(settings(parsed), absent, "{file}");
        // And the example is not the default, so the check can fail.
        let example = ConfigFile::parse(&file_setting(&key, key.example)).unwrap();
        assert_ne!(settings(example), absent, "{}", key.name);
        checked += 1;
    }
    assert!(checked >= 14, "{checked}");
}
