//! Reference data seen in the log: buildings, organizations and contractors that tickets named.
//! Mutations use it to complete a reference given by id; queries list it.

use std::collections::BTreeMap;

use opencity_domain::values::{BuildingRef, ContractorRef, OrganizationRef};
use opencity_domain::TicketEvent;
use serde::{Deserialize, Serialize};

/// One entity of the reference index, as stored in the `reference_entities` table.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "entity", content = "data", rename_all = "snake_case")]
pub enum ReferenceEntity {
    Building(BuildingRef),
    Organization(OrganizationRef),
    Contractor(ContractorRef),
}

impl ReferenceEntity {
    /// Returns the entity's kind and id, the key of its table row.
    pub fn key(&self) -> (&'static str, &str) {
        match self {
            ReferenceEntity::Building(building) => ("building", &building.id),
            ReferenceEntity::Organization(organization) => ("organization", &organization.id),
            ReferenceEntity::Contractor(contractor) => ("contractor", &contractor.id),
        }
    }

    /// Returns the entity an event names, if any.
    pub fn from_event(event: &TicketEvent) -> Option<ReferenceEntity> {
        match event {
            TicketEvent::TicketRegistered(e) => Some(ReferenceEntity::Building(e.building.clone())),
            TicketEvent::TicketRouted(e) => Some(ReferenceEntity::Organization(e.organization.clone())),
            TicketEvent::ContractorAssigned(e) => Some(ReferenceEntity::Contractor(e.contractor.clone())),
            _ => None,
        }
    }
}

/// The latest version of every building, organization and contractor named in the log.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ReferenceIndex {
    pub buildings: BTreeMap<String, BuildingRef>,
    pub organizations: BTreeMap<String, OrganizationRef>,
    pub contractors: BTreeMap<String, ContractorRef>,
}

impl ReferenceIndex {
    /// Records an entity; returns true when it is new or changed.
    pub fn insert(&mut self, entity: ReferenceEntity) -> bool {
        match entity {
            ReferenceEntity::Building(building) => {
                self.buildings.insert(building.id.clone(), building.clone()) != Some(building)
            }
            ReferenceEntity::Organization(organization) => {
                self.organizations.insert(organization.id.clone(), organization.clone()) != Some(organization)
            }
            ReferenceEntity::Contractor(contractor) => {
                self.contractors.insert(contractor.id.clone(), contractor.clone()) != Some(contractor)
            }
        }
    }

    /// Returns every entity of the index, buildings first.
    pub fn entities(&self) -> impl Iterator<Item = ReferenceEntity> + '_ {
        let buildings = self.buildings.values().cloned().map(ReferenceEntity::Building);
        let organizations = self.organizations.values().cloned().map(ReferenceEntity::Organization);
        let contractors = self.contractors.values().cloned().map(ReferenceEntity::Contractor);
        buildings.chain(organizations).chain(contractors)
    }

    /// Returns true when the index already has this exact version of the entity.
    pub fn contains(&self, entity: &ReferenceEntity) -> bool {
        match entity {
            ReferenceEntity::Building(building) => self.buildings.get(&building.id) == Some(building),
            ReferenceEntity::Organization(organization) => {
                self.organizations.get(&organization.id) == Some(organization)
            }
            ReferenceEntity::Contractor(contractor) => self.contractors.get(&contractor.id) == Some(contractor),
        }
    }

    pub fn building(&self, id: &str) -> Option<BuildingRef> {
        self.buildings.get(id).cloned()
    }

    pub fn organization(&self, id: &str) -> Option<OrganizationRef> {
        self.organizations.get(id).cloned()
    }

    pub fn contractor(&self, id: &str) -> Option<ContractorRef> {
        self.contractors.get(id).cloned()
    }
}

#[cfg(test)]
mod tests {
    use opencity_domain::values::OrganizationKind;

    use super::*;

    #[test]
    fn organization_entity_round_trips_as_json() {
        let entity = ReferenceEntity::Organization(OrganizationRef {
            id: "uk-1".to_string(),
            name: "УК «Заречье»".to_string(),
            kind: OrganizationKind::ManagementCompany,
        });
        let json = serde_json::to_string(&entity).expect("serializes");
        let back: ReferenceEntity = serde_json::from_str(&json).expect("deserializes");
        assert_eq!(back, entity);
    }
}
