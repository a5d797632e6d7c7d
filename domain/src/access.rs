//! Roles of the people and systems that use the API. A role with a subject (a resident,
//! organization or contractor id, a dispatcher's district) is what a token grants.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The kind of user a token acts for. Scopes follow from the role and the token's subject.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// A resident: own tickets only; files, confirms, rejects and rates.
    Resident,
    /// A dispatcher: files and routes tickets of one district (the subject).
    Dispatcher,
    /// A management organization or resource supplier: tickets of its buildings.
    Organization,
    /// A contractor: tickets assigned to it.
    Contractor,
    /// An analyst: statistics and tickets without personal data.
    Analyst,
    /// An auditor: the event log and histories.
    Auditor,
    /// An administrator: everything.
    Admin,
}

impl Role {
    pub const ALL: [Role; 7] = [
        Role::Resident,
        Role::Dispatcher,
        Role::Organization,
        Role::Contractor,
        Role::Analyst,
        Role::Auditor,
        Role::Admin,
    ];

    /// Returns the name used in tokens, metadata and the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Resident => "resident",
            Role::Dispatcher => "dispatcher",
            Role::Organization => "organization",
            Role::Contractor => "contractor",
            Role::Analyst => "analyst",
            Role::Auditor => "auditor",
            Role::Admin => "admin",
        }
    }

    /// Returns the Russian name shown to users.
    pub fn russian(self) -> &'static str {
        match self {
            Role::Resident => "житель",
            Role::Dispatcher => "диспетчер",
            Role::Organization => "управляющая организация",
            Role::Contractor => "подрядчик",
            Role::Analyst => "аналитик",
            Role::Auditor => "аудитор",
            Role::Admin => "администратор",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A role name that is not one of [`Role::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("неизвестная роль «{0}»: допустимы resident, dispatcher, organization, contractor, analyst, auditor, admin")]
pub struct UnknownRole(pub String);

impl FromStr for Role {
    type Err = UnknownRole;

    fn from_str(name: &str) -> Result<Role, UnknownRole> {
        Role::ALL
            .into_iter()
            .find(|role| role.as_str() == name)
            .ok_or_else(|| UnknownRole(name.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_names_round_trip() {
        for role in Role::ALL {
            assert_eq!(role.as_str().parse::<Role>(), Ok(role));
        }
    }

    #[test]
    fn unknown_role_lists_the_valid_ones() {
        let error = "root".parse::<Role>().unwrap_err();
        assert!(error.to_string().contains("«root»"), "{error}");
        assert!(error.to_string().contains("dispatcher"), "{error}");
    }
}
