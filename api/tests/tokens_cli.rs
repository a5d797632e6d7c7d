//! `opencity tokens create|list|revoke` on a SQLite store: the secret goes to stdout alone, the
//! list shows no secrets, and revoking twice fails the second time.

use std::process::{Command, Output};

fn opencity(data_dir: &std::path::Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_opencity"))
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .env_remove("OPENCITY_DATABASE_URL")
        .env("NO_COLOR", "1")
        .output()
        .expect("opencity runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).expect("UTF-8 output")
}

#[test]
fn tokens_create_list_revoke() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let created = opencity(
        dir.path(),
        &["tokens", "create", "--role", "contractor", "--subject", "podryad-7", "--label", "бригада 2", "--expires-in-days", "30"],
    );
    assert!(created.status.success(), "{}", text(&created.stderr));
    let secret = text(&created.stdout).trim().to_string();
    assert!(opencity_store::tokens::is_well_formed(&secret), "{secret}");
    let notice = text(&created.stderr);
    assert!(notice.contains("подрядчик"), "{notice}");
    assert!(notice.contains("один раз"), "{notice}");

    let listed = opencity(dir.path(), &["tokens", "list"]);
    assert!(listed.status.success(), "{}", text(&listed.stderr));
    let list = text(&listed.stdout);
    assert!(list.contains("contractor"), "{list}");
    assert!(list.contains("podryad-7"), "{list}");
    assert!(list.contains("«бригада 2»"), "{list}");
    assert!(list.contains("действует до"), "{list}");
    assert!(!list.contains(&secret[3..]), "the list shows a secret:\n{list}");
    let id = list.split_whitespace().next().expect("token id").to_string();

    let revoked = opencity(dir.path(), &["tokens", "revoke", &id]);
    assert!(revoked.status.success(), "{}", text(&revoked.stderr));
    let again = opencity(dir.path(), &["tokens", "revoke", &id]);
    assert_eq!(again.status.code(), Some(2), "{}", text(&again.stdout));
    assert!(text(&again.stderr).contains("tokens list"), "{}", text(&again.stderr));
    assert!(text(&opencity(dir.path(), &["tokens", "list"]).stdout).contains("отозван"));
}

#[test]
fn tokens_create_rejects_bad_input() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let unknown_role = opencity(dir.path(), &["tokens", "create", "--role", "root", "--subject", "x"]);
    assert_eq!(unknown_role.status.code(), Some(2));
    assert!(text(&unknown_role.stderr).contains("неизвестная роль «root»"), "{}", text(&unknown_role.stderr));

    let empty_subject = opencity(dir.path(), &["tokens", "create", "--role", "admin", "--subject", " "]);
    assert!(!empty_subject.status.success());
    assert!(text(&empty_subject.stderr).contains("субъект токена"), "{}", text(&empty_subject.stderr));
    assert!(text(&empty_subject.stdout).is_empty(), "{}", text(&empty_subject.stdout));
}
