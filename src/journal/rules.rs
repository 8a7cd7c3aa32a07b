//! The game rules a data directory's journals were written under, and the check a start
//! and `cairn journal verify` make against this build's.
//!
//! A journal holds the events a shard applied, refused ones too, not their outcomes:
//! recovery replays them through `Shard::apply`, and reaches the state the clients were
//! told about only if `apply` answers each event as it did when it was journaled. A
//! build whose rules differ (a move the old speed rule refused and the new one accepts)
//! would replay an old directory to another state without a word. So a data directory
//! records the [`RULES_VERSION`] it was initialised under in `DIR/rules-version` (the
//! number and a newline, like `DIR/shards`), written durably before any journal, and a
//! start refuses a directory that records another version, or that holds journals but no
//! version (written by a build from before versions were recorded). There is no
//! migration: the only build that replays a directory correctly is one with its rules.
//!
//! The server writes the file (`server/durable.rs`); this module only reads, so that
//! `verify` and `dump` can share the check without changing the directory.

use std::io;
use std::path::{Path, PathBuf};

use super::inspect::{read_number_file, shard_dirs};
use super::{parse_segment_name, parse_snapshot_name};
use crate::constants::RULES_VERSION;

/// The name of the file holding the rules version, in a data directory.
pub const RULES_VERSION_FILE: &str = "rules-version";

/// What a data directory says about its rules, when it says nothing against this build's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RulesCheck {
    /// The directory records this build's rules version.
    Same,
    /// The directory records no version and holds no journal: it is new (a start records
    /// this build's version before it writes anything else).
    New,
}

/// Reads `DIR/rules-version`: the version it records, `None` if the file is missing, or
/// a message naming the file if it cannot be read or holds something else.
pub fn read_rules_version(dir: &Path) -> Result<Option<u32>, String> {
    read_number_file(&dir.join(RULES_VERSION_FILE), "the rules version")
}

/// Checks a data directory's rules version against this build's [`RULES_VERSION`], as a
/// start does before it replays anything. Refused, with a message naming the file, both
/// versions and what the operator can do: another version, an unreadable file, and a
/// missing file beside journal segments or snapshots in the shard directories.
pub fn check_rules_version(dir: &Path) -> Result<RulesCheck, String> {
    let path = dir.join(RULES_VERSION_FILE);
    match read_rules_version(dir)? {
        Some(RULES_VERSION) => Ok(RulesCheck::Same),
        Some(written) => Err(format!(
            "{} says the data directory {} was written under game rules version {written}, and this build applies \
             rules version {RULES_VERSION}: its journals replay to the state their clients were told about only \
             under the rules that wrote them. Start it with a build of rules version {written} (the one that wrote \
             it); there is no migration between rules versions",
            path.display(),
            dir.display()
        )),
        None => match find_journal(dir)
            .map_err(|error| format!("cannot look for journals in {}: {error}", dir.display()))?
        {
            None => Ok(RulesCheck::New),
            Some(found) => Err(format!(
                "the data directory {} holds journals ({}) but no {RULES_VERSION_FILE} file ({} is missing): it was \
                 written by a build from before rules versions were recorded, whose game rules may differ from this \
                 build's (rules version {RULES_VERSION}), and a replay under other rules can drop or change \
                 acknowledged events. Start it with the build that wrote it; there is no migration between rules \
                 versions",
                dir.display(),
                found.display(),
                path.display()
            )),
        },
    }
}

/// One line on a data directory's rules version, for `cairn journal dump`, which reads
/// records without applying them and so dumps a directory of any version.
pub fn describe_rules_version(dir: &Path) -> String {
    let path = dir.join(RULES_VERSION_FILE);
    match read_rules_version(dir) {
        Ok(Some(version)) => {
            format!("rules version {version} ({}; this build applies {RULES_VERSION})", path.display())
        }
        Ok(None) => format!(
            "rules version: none recorded ({} is missing: written before rules versions were recorded, or new)",
            path.display()
        ),
        Err(error) => format!("rules version: unknown ({error})"),
    }
}

/// The first journal segment or snapshot found in one of `dir`'s shard directories
/// ([`shard_dirs`]: `shard-k`, followed through a symbolic link as a start follows it),
/// if any.
fn find_journal(dir: &Path) -> io::Result<Option<PathBuf>> {
    for shard in shard_dirs(dir)? {
        for file in std::fs::read_dir(shard)? {
            let file = file?;
            let journal = file
                .file_name()
                .to_str()
                .is_some_and(|name| parse_segment_name(name).is_some() || parse_snapshot_name(name).is_some());
            if journal {
                return Ok(Some(file.path()));
            }
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::TemporaryDir;

    #[test]
    fn a_directory_is_new_until_it_holds_a_journal_and_its_version_must_be_this_builds() {
        let temporary = TemporaryDir::new("rules-check");
        let dir = temporary.path();
        assert_eq!(check_rules_version(dir), Ok(RulesCheck::New));
        // Shard directories without segments or snapshots hold nothing to replay.
        std::fs::create_dir_all(dir.join("shard-0")).unwrap();
        std::fs::write(dir.join("shard-0").join("notes.txt"), b"").unwrap();
        assert_eq!(check_rules_version(dir), Ok(RulesCheck::New));
        std::fs::write(dir.join("shard-0").join(super::super::segment_name(1)), b"").unwrap();
        let message = check_rules_version(dir).unwrap_err();
        assert!(message.contains("before rules versions") && message.contains("journal-"), "{message}");
        std::fs::write(dir.join(RULES_VERSION_FILE), format!("{RULES_VERSION}\n")).unwrap();
        assert_eq!(check_rules_version(dir), Ok(RulesCheck::Same));
        std::fs::write(dir.join(RULES_VERSION_FILE), format!("{}\n", RULES_VERSION + 1)).unwrap();
        let message = check_rules_version(dir).unwrap_err();
        assert!(message.contains(&format!("game rules version {}", RULES_VERSION + 1)), "{message}");
        std::fs::write(dir.join(RULES_VERSION_FILE), "-1\n").unwrap();
        let message = check_rules_version(dir).unwrap_err();
        assert!(message.contains("should hold the rules version, not \"-1\""), "{message}");
    }
}
