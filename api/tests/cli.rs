//! The `opencity` binary as a user runs it: import exit codes and Russian reports.

use std::path::PathBuf;
use std::process::Command;

fn opencity() -> Command {
    Command::new(env!("CARGO_BIN_EXE_opencity"))
}

fn shared_data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/data").join(name)
}

#[test]
fn import_twice_reports_nothing_new() {
    let data_dir = tempfile::tempdir().expect("temp dir");
    let file = shared_data("boston311_100_qsv.csv");
    let run = || {
        opencity()
            .args(["import", "--format", "boston311"])
            .arg(&file)
            .arg("--data-dir")
            .arg(data_dir.path())
            .output()
            .expect("binary runs")
    };

    let first = run();
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    let first_report = String::from_utf8_lossy(&first.stdout).to_string();
    assert!(first_report.contains("импортировано заявок:   100"), "{first_report}");

    let second = run();
    assert!(second.status.success());
    let second_report = String::from_utf8_lossy(&second.stdout).to_string();
    assert!(second_report.contains("добавлено событий:      0"), "{second_report}");
    assert!(second_report.contains("уже были в хранилище:   100"), "{second_report}");
}

#[test]
fn import_empty_file_exits_2() {
    let data_dir = tempfile::tempdir().expect("temp dir");
    let empty = data_dir.path().join("empty.csv");
    std::fs::write(&empty, b"").expect("write");
    let output = opencity()
        .args(["import", "--format", "la311"])
        .arg(&empty)
        .arg("--data-dir")
        .arg(data_dir.path().join("store"))
        .output()
        .expect("binary runs");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("Ошибка"), "{stderr}");
}

#[test]
fn import_broken_record_exits_3_and_keeps_going() {
    let data_dir = tempfile::tempdir().expect("temp dir");
    let original = std::fs::read_to_string(shared_data("boston311_100_qsv.csv")).expect("read");
    let mut lines: Vec<&str> = original.lines().collect();
    let broken = lines[5].replacen(",2022-", ",2022-13-", 1);
    lines[5] = &broken;
    let file = data_dir.path().join("boston-broken.csv");
    std::fs::write(&file, lines.join("\n")).expect("write");

    let output = opencity()
        .args(["import", "--format", "boston311"])
        .arg(&file)
        .arg("--data-dir")
        .arg(data_dir.path().join("store"))
        .output()
        .expect("binary runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(3), "{stdout}{stderr}");
    assert!(stderr.contains("Строка 6"), "{stderr}");
    assert!(stdout.contains("импортировано заявок:   99"), "{stdout}");
    assert!(stdout.contains("отклонено записей:      1"), "{stdout}");
}

#[test]
fn unknown_format_is_a_usage_error() {
    let output = opencity().args(["import", "--format", "nyc311", "x.csv"]).output().expect("binary runs");
    assert_eq!(output.status.code(), Some(2));
}

#[test]
fn sla_catalogue_file_is_used() {
    let data_dir = tempfile::tempdir().expect("temp dir");
    let fixtures = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures");
    let catalogue = std::fs::read_to_string(fixtures.join("sla/ru.toml")).expect("catalogue reads");
    let copy_dir = data_dir.path().join("sla");
    std::fs::create_dir_all(copy_dir.join("../calendars")).expect("dirs");
    for name in ["ru-production-calendar.csv", "ru-regional-holidays.csv"] {
        std::fs::copy(fixtures.join("calendars").join(name), copy_dir.join("../calendars").join(name)).expect("copy");
    }
    std::fs::write(copy_dir.join("ru.toml"), &catalogue).expect("write");

    let import = |catalogue: &std::path::Path| {
        opencity()
            .arg("--sla-catalogue")
            .arg(catalogue)
            .args(["import", "--format", "boston311"])
            .arg(shared_data("boston311_100_qsv.csv"))
            .arg("--data-dir")
            .arg(data_dir.path().join("store"))
            .output()
            .expect("binary runs")
    };
    let good = import(&copy_dir.join("ru.toml"));
    assert!(good.status.success(), "{}", String::from_utf8_lossy(&good.stderr));

    let missing = import(&copy_dir.join("absent.toml"));
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("справочник SLA"));
}
