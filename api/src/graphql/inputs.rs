//! Input objects and enums of the GraphQL schema.

use async_graphql::{Enum, InputObject};
use opencity_domain::values::{CancelReason, Channel, CloseReason, OrganizationKind};

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(remote = "Channel")]
/// Канал подачи заявки.
#[graphql(name = "Channel")]
pub enum ChannelGql {
    /// Единый call-центр.
    CallCenter,
    /// Сайт.
    Web,
    /// Мобильное приложение.
    Mobile,
    /// Городской портал обращений.
    Portal,
    /// Open311 GeoReport v2.
    Open311,
    /// ГИС ЖКХ.
    GisZhkh,
    /// Личный визит.
    WalkIn,
}

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(remote = "OrganizationKind")]
/// Вид организации.
#[graphql(name = "OrganizationKind")]
pub enum OrganizationKindGql {
    /// Управляющая компания.
    ManagementCompany,
    /// ТСЖ.
    Hoa,
    /// ЖСК.
    HousingCoop,
    /// Ресурсоснабжающая организация.
    ResourceSupplier,
    /// Муниципальная служба.
    Municipal,
}

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(remote = "CancelReason")]
/// Причина отмены заявки.
#[graphql(name = "CancelReason")]
pub enum CancelReasonGql {
    /// Дубликат другой заявки.
    Duplicate,
    /// Спам.
    Spam,
    /// Заявитель отозвал заявку.
    WithdrawnByRequester,
    /// Передана в другую организацию вне системы.
    ReferredOut,
}

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(remote = "CloseReason")]
/// Основание закрытия заявки.
#[graphql(name = "CloseReason")]
pub enum CloseReasonGql {
    /// Житель подтвердил выполнение.
    Confirmed,
    /// Житель не ответил в срок подтверждения.
    NoResidentResponse,
    /// Закрыта организацией без отчёта о выполнении.
    Administrative,
}

/// Заявитель. Персональные данные.
#[derive(InputObject, Default)]
pub struct RequesterInput {
    /// ФИО.
    pub name: Option<String>,
    /// Телефон.
    pub phone: Option<String>,
    /// Электронная почта.
    pub email: Option<String>,
    /// Идентификатор жителя (лицевой счёт или учётная запись).
    pub resident_id: Option<String>,
}

/// Дом (МКД). Достаточно `id` дома, уже известного системе; для нового дома укажите адрес и часовой пояс.
#[derive(InputObject)]
pub struct BuildingInput {
    /// Идентификатор дома.
    pub id: String,
    /// Адрес.
    pub address: Option<String>,
    /// Район.
    pub district: Option<String>,
    /// Часовой пояс IANA, например Europe/Moscow.
    pub time_zone: Option<String>,
    /// Код региона ISO 3166-2 (RU-TA) для региональных выходных.
    pub region: Option<String>,
}

/// Новая заявка.
#[derive(InputObject)]
pub struct RegisterTicketInput {
    /// Канал подачи.
    pub channel: ChannelGql,
    /// Заявитель.
    #[graphql(default)]
    pub requester: RequesterInput,
    /// Дом.
    pub building: BuildingInput,
    /// Помещение (квартира).
    pub premises: Option<String>,
    /// Код категории из справочника `categories`.
    pub category: String,
    /// Описание проблемы.
    pub description: String,
    /// Номер заявки во внешней системе.
    pub external_id: Option<String>,
    /// Ключ идемпотентности: повторная отправка с тем же ключом не создаёт вторую заявку.
    pub idempotency_key: Option<String>,
}

/// Организация-исполнитель (УК, ТСЖ, РСО).
#[derive(InputObject)]
pub struct OrganizationInput {
    /// Идентификатор.
    pub id: String,
    /// Название; можно не указывать для уже известной организации.
    pub name: Option<String>,
    /// Вид организации.
    pub kind: Option<OrganizationKindGql>,
}

/// Подрядчик.
#[derive(InputObject)]
pub struct ContractorInput {
    /// Идентификатор.
    pub id: String,
    /// Название; можно не указывать для уже известного подрядчика.
    pub name: Option<String>,
}
