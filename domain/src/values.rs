//! Value types shared by ticket commands and events.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Intake channel of a ticket.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    CallCenter,
    Web,
    Mobile,
    Portal,
    Open311,
    GisZhkh,
    WalkIn,
}

impl Channel {
    pub const ALL: [Channel; 7] = [
        Channel::CallCenter,
        Channel::Web,
        Channel::Mobile,
        Channel::Portal,
        Channel::Open311,
        Channel::GisZhkh,
        Channel::WalkIn,
    ];

    /// Returns the snake_case name used in events and data files.
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::CallCenter => "call_center",
            Channel::Web => "web",
            Channel::Mobile => "mobile",
            Channel::Portal => "portal",
            Channel::Open311 => "open311",
            Channel::GisZhkh => "gis_zhkh",
            Channel::WalkIn => "walk_in",
        }
    }

    /// Parses the snake_case name; `None` for an unknown channel.
    pub fn parse(name: &str) -> Option<Channel> {
        Channel::ALL.into_iter().find(|channel| channel.as_str() == name)
    }
}

/// Emergency tickets run on a 24/7 clock; routine ones on working days.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    Emergency,
    Routine,
    /// A written appeal with a legal reply deadline in working days.
    Appeal,
}

impl Priority {
    pub const ALL: [Priority; 3] = [Priority::Emergency, Priority::Routine, Priority::Appeal];

    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Emergency => "emergency",
            Priority::Routine => "routine",
            Priority::Appeal => "appeal",
        }
    }

    pub fn parse(name: &str) -> Option<Priority> {
        Priority::ALL.into_iter().find(|priority| priority.as_str() == name)
    }
}

/// A resident's score of the result, 1 to 5.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "u8", into = "u8")]
pub struct Rating(u8);

impl Rating {
    /// Parses a score; only 1 to 5 are valid.
    pub fn parse(value: i64) -> Option<Rating> {
        (1..=5).contains(&value).then_some(Rating(value as u8))
    }

    pub fn value(self) -> u8 {
        self.0
    }
}

impl TryFrom<u8> for Rating {
    type Error = String;

    fn try_from(value: u8) -> Result<Self, Self::Error> {
        Rating::parse(value.into()).ok_or_else(|| format!("rating {value} is outside 1..=5"))
    }
}

impl From<Rating> for u8 {
    fn from(rating: Rating) -> u8 {
        rating.0
    }
}

/// The resident who filed the ticket. Personal data: stored as given.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Requester {
    pub name: Option<String>,
    pub phone: Option<String>,
    pub email: Option<String>,
    /// The resident's account or user id, when the channel provides it.
    pub resident_id: Option<String>,
}

/// A snapshot of the building a ticket is about, taken at registration so that a replay never
/// depends on reference data that changed later.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildingRef {
    pub id: String,
    pub address: String,
    pub district: Option<String>,
    /// IANA time zone name, such as `Europe/Moscow`.
    pub time_zone: String,
    /// ISO 3166-2 region code (`RU-TA`) whose regional days off apply; `None` outside Russia.
    pub region: Option<String>,
}

/// The kind of organization a ticket is routed to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrganizationKind {
    ManagementCompany,
    Hoa,
    HousingCoop,
    ResourceSupplier,
    Municipal,
}

impl OrganizationKind {
    pub fn as_str(self) -> &'static str {
        match self {
            OrganizationKind::ManagementCompany => "management_company",
            OrganizationKind::Hoa => "hoa",
            OrganizationKind::HousingCoop => "housing_coop",
            OrganizationKind::ResourceSupplier => "resource_supplier",
            OrganizationKind::Municipal => "municipal",
        }
    }
}

/// The organization responsible for a ticket (УК, ТСЖ, РСО or a city department).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrganizationRef {
    pub id: String,
    pub name: String,
    pub kind: OrganizationKind,
}

/// A contractor working under an organization.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContractorRef {
    pub id: String,
    pub name: String,
}

/// Reason for cancelling a ticket.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CancelReason {
    Duplicate,
    Spam,
    WithdrawnByRequester,
    /// Handed to another authority outside the system (LA 311 "Referred Out").
    ReferredOut,
}

impl CancelReason {
    pub fn as_str(self) -> &'static str {
        match self {
            CancelReason::Duplicate => "duplicate",
            CancelReason::Spam => "spam",
            CancelReason::WithdrawnByRequester => "withdrawn_by_requester",
            CancelReason::ReferredOut => "referred_out",
        }
    }
}

/// Reason for closing a ticket.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CloseReason {
    /// The resident confirmed the work.
    Confirmed,
    /// The resident did not reply within the confirmation window.
    NoResidentResponse,
    /// Closed by the organization without a completion report (imported history, administrative).
    Administrative,
}

/// The SLA deadlines of a ticket, as instants in UTC.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deadlines {
    /// Reaction (for emergencies: localization) deadline, when the catalogue sets one.
    pub response: Option<DateTime<Utc>>,
    pub resolution: DateTime<Utc>,
    /// The legal basis or source of the targets, for example "ПП 416 п.13".
    pub basis: String,
}

impl Deadlines {
    /// Moves every deadline later by `paused`, the time the SLA clock stood still.
    pub fn shifted_by(&self, paused: chrono::Duration) -> Deadlines {
        Deadlines {
            response: self.response.map(|deadline| deadline + paused),
            resolution: self.resolution + paused,
            basis: self.basis.clone(),
        }
    }
}

/// Derives a stable ticket id from an idempotency key (an import's source record id or a
/// client's key), so the same key always addresses the same stream.
pub fn ticket_id_for_key(key: &str) -> Uuid {
    const NAMESPACE: Uuid = Uuid::from_u128(0x6f70_656e_6369_7479_7469_636b_6574_7331);
    Uuid::new_v5(&NAMESPACE, key.as_bytes())
}
