//! The LA 311 extract imported into SQLite and into PostgreSQL must give identical statistics,
//! and its records closed before they were created must be flagged.

mod common;

use chrono::{TimeZone, Utc};
use common::*;
use opencity_fixtures::import::ImportFormat;
use opencity_projections::{overdue_counters, sla_stats, Dimension, StatsFilter};
use opencity_store::testing::{temp_postgres, temp_sqlite};
use opencity_store::Store;

#[tokio::test]
async fn la_statistics_equal_on_both_backends() {
    let services = services();
    let (_dir, sqlite_config) = temp_sqlite();
    let sqlite = Store::open(&sqlite_config).await.expect("sqlite opens");
    let postgres_db = temp_postgres().await;
    let postgres = Store::open(&postgres_db.config()).await.expect("postgres opens");

    let sqlite_summary = import(&sqlite, &services, ImportFormat::La311, "la311_2017_subset_hackforla.csv").await;
    let postgres_summary = import(&postgres, &services, ImportFormat::La311, "la311_2017_subset_hackforla.csv").await;
    assert_eq!(sqlite_summary, postgres_summary);
    assert!(sqlite_summary.imported > 9_000, "imported {}", sqlite_summary.imported);
    assert_eq!(sqlite_summary.flagged, 12, "records closed before creation");

    let sqlite_views = projected(&sqlite).await;
    let postgres_views = projected(&postgres).await;
    let sqlite_views = sqlite_views.views().await;
    let postgres_views = postgres_views.views().await;
    assert_eq!(sqlite_views.len(), postgres_views.len());

    let zone = chrono_tz::America::Los_Angeles;
    let groupings: [&[Dimension]; 5] = [
        &[Dimension::Organization],
        &[Dimension::Category],
        &[Dimension::Organization, Dimension::Day],
        &[Dimension::Channel, Dimension::Week],
        &[],
    ];
    for group_by in groupings {
        let left = sla_stats(sqlite_views.values(), group_by, &StatsFilter::default(), zone);
        let right = sla_stats(postgres_views.values(), group_by, &StatsFilter::default(), zone);
        assert!(!left.is_empty());
        assert_eq!(left, right, "slaStats grouped by {group_by:?}");
    }
    for as_of in [
        Utc.with_ymd_and_hms(2017, 12, 29, 12, 0, 0).unwrap(),
        Utc.with_ymd_and_hms(2018, 1, 15, 0, 0, 0).unwrap(),
        Utc.with_ymd_and_hms(2018, 6, 1, 0, 0, 0).unwrap(),
    ] {
        let left = overdue_counters(sqlite_views.values(), &[Dimension::Organization], as_of, zone);
        let right = overdue_counters(postgres_views.values(), &[Dimension::Organization], as_of, zone);
        assert_eq!(left, right, "overdueCounters as of {as_of}");
    }

    let flagged = sqlite_views.values().filter(|view| view.flagged.iter().any(|f| f == "closed_before_created")).count();
    assert_eq!(flagged, 12);
    for view in sqlite_views.values().filter(|view| !view.flagged.is_empty()) {
        assert!(view.resolve_seconds().is_none_or(|seconds| seconds >= 0.0), "negative duration for {:?}", view.external_id);
    }

    drop(postgres);
    postgres_db.cleanup().await;
}
