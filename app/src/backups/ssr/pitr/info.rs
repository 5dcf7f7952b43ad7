//! `pgbackrest info --output=json`, read: the stanza's status, its backups (oldest
//! first) and the range of archived WAL. The repository describes itself, so this is
//! what a restore can use, whatever Salvage's own tables say.

use serde::Deserialize;

use super::super::BackupError;

/// One stanza of the repository.
#[derive(Clone, Debug, PartialEq)]
pub struct Repository {
    /// pgBackRest's status message (`ok`, `no valid backups`, `missing stanza path`, …).
    pub status: String,
    /// Its status code: 0 is ok, 2 no valid backups; anything else is a problem.
    pub code: i64,
    /// Every backup set, oldest first.
    pub backups: Vec<PitrBackup>,
    /// The first and last archived WAL segment's names.
    pub archive: Option<(String, String)>,
}

/// A base backup in the repository.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PitrBackup {
    /// pgBackRest's label, e.g. `20261207-014501F`.
    pub label: String,
    /// `full`, `diff` or `incr`.
    pub kind: String,
    pub started_ms: i64,
    pub stopped_ms: i64,
    /// The database's size, and what the backup holds in the repository (compressed,
    /// and only what changed for `diff`/`incr`).
    pub size_bytes: i64,
    pub repo_bytes: i64,
}

#[derive(Deserialize)]
struct Stanza {
    name: String,
    status: Status,
    #[serde(default)]
    backup: Vec<Backup>,
    #[serde(default)]
    archive: Vec<Archive>,
    #[serde(default)]
    repo: Vec<Repo>,
}

#[derive(Deserialize)]
struct Repo {
    #[serde(default)]
    cipher: String,
    status: Status,
}

#[derive(Deserialize)]
struct Status {
    code: i64,
    message: String,
}

#[derive(Deserialize)]
struct Backup {
    label: String,
    #[serde(rename = "type")]
    kind: String,
    timestamp: Stamps,
    info: Sizes,
}

#[derive(Deserialize)]
struct Stamps {
    start: i64,
    stop: i64,
}

#[derive(Deserialize)]
struct Sizes {
    size: i64,
    repository: RepoSizes,
}

#[derive(Deserialize)]
struct RepoSizes {
    delta: i64,
}

#[derive(Deserialize)]
struct Archive {
    min: Option<String>,
    max: Option<String>,
}

/// Reads `stanza` out of `info --output=json`. A stanza the output does not have is an
/// error naming it (the configuration points at another repository).
pub fn parse(json: &str, stanza: &str) -> Result<Repository, BackupError> {
    // A message may quote what an unreadable file held, raw bytes and all: JSON allows
    // no control characters in a string, and they carry nothing a person reads.
    let json: String = json
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let stanzas: Vec<Stanza> = serde_json::from_str(&json).map_err(|error| {
        BackupError::tool(format!("pgbackrest info: unreadable output ({error})"))
    })?;
    let found = stanzas
        .into_iter()
        .find(|s| s.name == stanza)
        .ok_or_else(|| BackupError::tool(format!("pgbackrest info: no stanza `{stanza}`")))?;
    // 99 ("other"): pgBackRest could not read the repository; the repository's own
    // status says why. An encrypted repository read with another passphrase decrypts
    // to garbage, which pgBackRest reports as an unparsable info file.
    if found.status.code == 99 {
        let repo = found.repo.first();
        let said = repo
            .map(|r| {
                r.status
                    .message
                    .lines()
                    .next()
                    .unwrap_or_default()
                    .to_owned()
            })
            .unwrap_or_else(|| found.status.message.clone());
        let encrypted = repo.is_some_and(|r| !r.cipher.is_empty() && r.cipher != "none");
        let garbled = said.contains("FormatError") || said.contains("CryptoError");
        return Err(BackupError::tool(if encrypted && garbled {
            format!(
                "pgBackRest cannot read the encrypted repository: the cipher passphrase \
                 (repo1-cipher-pass in the file SALVAGE_PGBACKREST_CONFIG names) is not the \
                 one it was encrypted with, or the repository is damaged. pgBackRest said: {said}"
            )
        } else {
            format!("pgBackRest cannot read the repository: {said}")
        }));
    }
    let archive = found
        .archive
        .last()
        .and_then(|a| Some((a.min.clone()?, a.max.clone()?)));
    Ok(Repository {
        status: found.status.message,
        code: found.status.code,
        backups: found
            .backup
            .into_iter()
            .map(|b| PitrBackup {
                label: b.label,
                kind: b.kind,
                started_ms: b.timestamp.start * 1000,
                stopped_ms: b.timestamp.stop * 1000,
                size_bytes: b.info.size,
                repo_bytes: b.info.repository.delta,
            })
            .collect(),
        archive,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What pgBackRest 2.45 printed for the local stanza after its first full backup.
    const ONE_FULL: &str = r#"[{"archive":[{"database":{"id":1,"repo-key":1},"id":"15-1",
        "max":"000000010000000D000000B3","min":"000000010000000D000000B0"}],
        "backup":[{"archive":{"start":"000000010000000D000000B2",
        "stop":"000000010000000D000000B3"},"backrest":{"format":5,"version":"2.45"},
        "database":{"id":1,"repo-key":1},"error":false,"info":{"delta":2555714002,
        "repository":{"delta":314040208,"size":314040208},"size":2555714002},
        "label":"20261207-014302F","lsn":{"start":"D/B2000028","stop":"D/B3000050"},
        "prior":null,"reference":null,"timestamp":{"start":1796607782,"stop":1796607884},
        "type":"full"}],"cipher":"aes-256-cbc","db":[{"id":1,"repo-key":1,
        "system-id":7716139169099882397,"version":"15"}],"name":"salvage",
        "repo":[{"cipher":"aes-256-cbc","key":1,"status":{"code":0,"message":"ok"}}],
        "status":{"code":0,"lock":{"backup":{"held":false}},"message":"ok"}}]"#;

    /// What pgBackRest 2.45 printed for the local stanza read with a wrong passphrase.
    const WRONG_PASSPHRASE: &str = r#"[{"archive":[],"backup":[],"cipher":"aes-256-cbc",
        "db":[],"name":"salvage","repo":[{"cipher":"aes-256-cbc","key":1,"status":{
        "code":99,"message":"[FormatError] unable to load info file '/r/backup/salvage/backup.info' or '/r/backup/salvage/backup.info.copy':\nFormatError: key/value found outside of section at line 1: /"}}],
        "status":{"code":99,"lock":{"backup":{"held":false}},"message":"other"}}]"#;

    #[test]
    fn a_repository_read_with_another_passphrase_is_an_error_naming_the_setting() {
        // As printed: the garbage it decrypted is quoted raw, control characters and all.
        let printed = WRONG_PASSPHRASE.replace("line 1: /", "line 1: /\u{1}\u{7}\u{0}");
        let error = parse(&printed, "salvage").unwrap_err().to_string();
        assert!(error.contains("repo1-cipher-pass"), "{error}");
        assert!(error.contains("SALVAGE_PGBACKREST_CONFIG"), "{error}");
        assert!(error.contains("unable to load info file"), "{error}");
    }

    #[test]
    fn a_stanza_with_a_full_backup_reads_as_its_times_sizes_and_archive_range() {
        let repository = parse(ONE_FULL, "salvage").unwrap();
        assert_eq!(repository.status, "ok");
        assert_eq!(repository.code, 0);
        assert_eq!(
            repository.backups,
            vec![PitrBackup {
                label: "20261207-014302F".into(),
                kind: "full".into(),
                started_ms: 1_796_607_782_000,
                stopped_ms: 1_796_607_884_000,
                size_bytes: 2_555_714_002,
                repo_bytes: 314_040_208,
            }]
        );
        assert_eq!(
            repository.archive,
            Some((
                "000000010000000D000000B0".into(),
                "000000010000000D000000B3".into()
            ))
        );
    }

    #[test]
    fn a_new_stanza_has_no_backups_and_says_so() {
        let json = r#"[{"archive":[],"backup":[],"name":"salvage",
            "status":{"code":2,"message":"no valid backups"}}]"#;
        let repository = parse(json, "salvage").unwrap();
        assert_eq!(
            (repository.code, repository.status.as_str()),
            (2, "no valid backups")
        );
        assert!(repository.backups.is_empty());
        assert_eq!(repository.archive, None);
    }

    #[test]
    fn another_stanza_or_unreadable_output_is_an_error_naming_it() {
        let error = parse(ONE_FULL, "other").unwrap_err().to_string();
        assert!(error.contains("no stanza `other`"), "{error}");
        let error = parse("not json", "salvage").unwrap_err().to_string();
        assert!(error.contains("unreadable output"), "{error}");
    }
}
