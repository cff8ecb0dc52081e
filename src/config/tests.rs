use super::*;

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn defaults_without_any_setting() {
    let config = Config::load_from(None, &[]).unwrap();
    assert_eq!(config.listen.to_string(), "127.0.0.1:8080");
    assert_eq!(config.data_dir, PathBuf::from("./data"));
    assert_eq!(config.hook_auth_header, "Authorization");
    assert!(!config.dry_run);
    assert_eq!(config.outage_min_failures, 3);
}

#[test]
fn environment_wins_over_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bouncewatch.toml");
    std::fs::write(&path, "listen = \"127.0.0.1:9000\"\ndry_run = true\n").unwrap();
    let config = Config::load_from(
        Some(&path),
        &env(&[("BOUNCEWATCH_LISTEN", "127.0.0.1:9001")]),
    )
    .unwrap();
    assert_eq!(config.listen.to_string(), "127.0.0.1:9001");
    assert!(config.dry_run);
}

#[test]
fn booleans_accept_one_and_zero() {
    let config = Config::load_from(None, &env(&[("BOUNCEWATCH_DRY_RUN", "1")])).unwrap();
    assert!(config.dry_run);
    let config = Config::load_from(None, &env(&[("BOUNCEWATCH_DRY_RUN", "0")])).unwrap();
    assert!(!config.dry_run);
}

#[test]
fn bad_setting_is_named() {
    let cases = [
        ("BOUNCEWATCH_LISTEN", "not-an-address", "listen"),
        ("BOUNCEWATCH_DRY_RUN", "maybe", "dry_run"),
        (
            "BOUNCEWATCH_OUTAGE_MIN_FAILURES",
            "0",
            "outage_min_failures",
        ),
        (
            "BOUNCEWATCH_HOOK_AUTH_HEADER",
            "bad header",
            "hook_auth_header",
        ),
        (
            "BOUNCEWATCH_NO_SUCH_THING",
            "1",
            "BOUNCEWATCH_NO_SUCH_THING",
        ),
    ];
    for (key, value, named) in cases {
        let message = Config::load_from(None, &env(&[(key, value)]))
            .unwrap_err()
            .to_string();
        assert!(message.contains(named), "{key}={value}: {message}");
    }
}

#[test]
fn unknown_file_key_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bouncewatch.toml");
    std::fs::write(&path, "lisen = \"127.0.0.1:9000\"\n").unwrap();
    let message = Config::load_from(Some(&path), &[]).unwrap_err().to_string();
    assert!(message.contains("lisen"), "{message}");
}

#[test]
fn secret_debug_hides_value() {
    let secret = Secret::new("very-secret-value");
    assert_eq!(format!("{secret:?}"), "Secret(***)");
}

#[test]
fn generated_secrets_are_private_files() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config {
        data_dir: dir.path().to_path_buf(),
        ..Config::default()
    };
    let generated = ensure_generated_secrets(&mut config).unwrap();
    assert_eq!(generated.created.len(), 2);
    let mode = std::fs::metadata(dir.path().join("hook-secret"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let first = config.hook_secret.clone().unwrap();

    let mut again = Config {
        data_dir: dir.path().to_path_buf(),
        ..Config::default()
    };
    let generated = ensure_generated_secrets(&mut again).unwrap();
    assert!(generated.created.is_empty());
    assert_eq!(again.hook_secret.unwrap(), first);
}
