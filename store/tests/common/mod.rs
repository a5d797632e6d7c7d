//! Shared setup of the store tests: a store on either backend, and ticket commands.

#![allow(dead_code)]

use std::sync::Arc;

use chrono::{DateTime, Duration, TimeZone, Utc};
use opencity_domain::ticket::{AcceptTicket, CommentTicket, RegisterTicket, RouteTicket};
use opencity_domain::values::{BuildingRef, Channel, OrganizationKind, OrganizationRef, Requester};
use opencity_domain::{TicketCommand, TicketServices};
use opencity_store::testing::{temp_postgres, temp_sqlite, TempDatabase};
use opencity_store::{BackendKind, DbPool, Store, StoreConfig};
use tempfile::TempDir;
use uuid::Uuid;

/// A store on a fresh database, and what removes the database afterwards.
pub struct TestStore {
    pub store: Store,
    pub config: StoreConfig,
    database: TestDatabase,
}

enum TestDatabase {
    Sqlite(TempDir),
    Postgres(TempDatabase),
}

impl TestStore {
    pub async fn open(backend: BackendKind) -> TestStore {
        let (config, database) = match backend {
            BackendKind::Sqlite => {
                let (directory, config) = temp_sqlite();
                (config, TestDatabase::Sqlite(directory))
            }
            BackendKind::Postgres => {
                let database = temp_postgres().await;
                (database.config(), TestDatabase::Postgres(database))
            }
        };
        let store = Store::open(&config).await.expect("open store");
        TestStore {
            store,
            config,
            database,
        }
    }

    /// Closes the pool and removes the database.
    pub async fn cleanup(self) {
        match self.store.pool() {
            DbPool::Postgres(pool) => pool.close().await,
            DbPool::Sqlite(pool) => pool.close().await,
        }
        match self.database {
            TestDatabase::Sqlite(directory) => drop(directory),
            TestDatabase::Postgres(database) => database.cleanup().await,
        }
    }
}

/// Services with the default SLA catalogue of the fixtures.
pub fn services() -> TicketServices {
    let catalogue =
        opencity_fixtures::sla::default_catalogue().expect("default SLA catalogue loads");
    TicketServices {
        sla: Arc::new(catalogue),
    }
}

/// An emergency category of the default catalogue: its deadlines run on a 24/7 clock.
pub const CATEGORY: &str = "emergency_cold_water";

/// Business time `minutes` after a fixed instant.
pub fn at(minutes: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 3, 4, 7, 0, 0)
        .single()
        .expect("valid instant")
        + Duration::minutes(minutes)
}

pub fn building() -> BuildingRef {
    BuildingRef {
        id: "building-1".to_string(),
        address: "г. Казань, ул. Баумана, д. 1".to_string(),
        district: Some("Вахитовский".to_string()),
        time_zone: "Europe/Moscow".to_string(),
        region: Some("RU-TA".to_string()),
    }
}

pub fn register(ticket_id: Uuid, at: DateTime<Utc>) -> TicketCommand {
    TicketCommand::Register(RegisterTicket {
        ticket_id,
        external_id: None,
        channel: Channel::CallCenter,
        requester: Requester::default(),
        building: building(),
        premises: Some("12".to_string()),
        category: CATEGORY.to_string(),
        description: "течь в подвале".to_string(),
        resolution_deadline_override: None,
        at,
    })
}

pub fn route(at: DateTime<Utc>) -> TicketCommand {
    TicketCommand::Route(RouteTicket {
        organization: OrganizationRef {
            id: "uk-1".to_string(),
            name: "УК «Центр»".to_string(),
            kind: OrganizationKind::ManagementCompany,
        },
        at,
    })
}

pub fn accept(at: DateTime<Utc>) -> TicketCommand {
    TicketCommand::Accept(AcceptTicket { at })
}

pub fn comment(text: &str, at: DateTime<Utc>) -> TicketCommand {
    TicketCommand::Comment(CommentTicket {
        author: "dispatcher".to_string(),
        text: text.to_string(),
        at,
    })
}
