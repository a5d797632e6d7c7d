//! Russian messages and stable codes for the errors async-graphql itself produces (parse and
//! validation errors), which carry English text and no code.

use async_graphql::{ErrorExtensionValues, ServerError, Value};

/// Code of a request that is not valid GraphQL syntax or JSON.
pub const PARSE_FAILED: &str = "GRAPHQL_PARSE_FAILED";
/// Code of a syntactically valid request that does not fit the schema.
pub const VALIDATION_FAILED: &str = "GRAPHQL_VALIDATION_FAILED";

/// Gives every error without a code a Russian message and a code; errors of our resolvers
/// already have both and stay as they are.
pub fn localize_errors(errors: &mut [ServerError]) {
    for error in errors {
        let has_code = error.extensions.as_ref().is_some_and(|extensions| extensions.get("code").is_some());
        if has_code {
            continue;
        }
        let (code, message) = translate(&error.message);
        let mut extensions = error.extensions.take().unwrap_or_else(ErrorExtensionValues::default);
        extensions.set("code", Value::from(code));
        extensions.set("detail", Value::from(error.message.clone()));
        error.extensions = Some(extensions);
        error.message = message;
    }
}

fn translate(message: &str) -> (&'static str, String) {
    let quoted: Vec<&str> = message.split('"').skip(1).step_by(2).collect();
    let first = quoted.first().copied().unwrap_or("");
    let second = quoted.get(1).copied().unwrap_or("");

    if message.starts_with(" --> ") || message.contains("expected") && message.contains("-->") {
        return (PARSE_FAILED, format!("Синтаксическая ошибка в запросе GraphQL: {}. Проверьте скобки и кавычки в указанном месте.", message.trim()));
    }

    if message.starts_with("Unknown field") {
        return (VALIDATION_FAILED, format!("Неизвестное поле «{first}» у типа «{second}». Проверьте имя поля по схеме (GraphiQL, вкладка Docs)."));
    }
    if message.starts_with("Unknown argument") {
        return (VALIDATION_FAILED, format!("Неизвестный аргумент «{first}» у поля «{second}». Проверьте аргументы по схеме."));
    }
    if message.contains("Invalid value for argument") {
        return (VALIDATION_FAILED, format!("Недопустимое значение аргумента «{first}»: {}. Исправьте значение по типу аргумента в схеме.", message));
    }
    if message.contains("argument") && message.contains("is required") {
        return (VALIDATION_FAILED, format!("Не указан обязательный аргумент «{second}» поля «{first}»."));
    }
    if message.contains("must have a selection of subfields") {
        return (VALIDATION_FAILED, format!("У поля «{first}» нужно перечислить вложенные поля в фигурных скобках."));
    }

    if message.starts_with("Query is nested too deep") {
        return ("QUERY_TOO_DEEP", "Запрос слишком глубокий: допускается не более 12 уровней вложенности. Упростите запрос.".to_string());
    }
    if message.starts_with("Query is too complex") {
        return ("QUERY_TOO_COMPLEX", "Запрос слишком сложный: уменьшите число полей или размер страниц.".to_string());
    }
    if message.contains("Unknown operation") || message.contains("Operation") && message.contains("not found") {
        return (VALIDATION_FAILED, format!("Операция «{first}» не найдена в документе запроса. Проверьте operationName."));
    }
    if message.contains("variable") || message.contains("Variable") {
        return (VALIDATION_FAILED, format!("Ошибка в переменных запроса: {message}. Проверьте имена и типы переменных."));
    }
    (VALIDATION_FAILED, format!("Запрос GraphQL не соответствует схеме: {message}."))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_field_is_translated() {
        let (code, message) = translate("Unknown field \"nope\" on type \"Query\".");
        assert_eq!(code, VALIDATION_FAILED);
        assert!(message.contains("«nope»"), "{message}");
        assert!(message.contains("«Query»"), "{message}");
    }

    #[test]
    fn missing_argument_names_argument_and_field() {
        let (code, message) =
            translate("Field \"confirmCompletion\" argument \"id\" of type \"ID!\" is required but not provided");
        assert_eq!(code, VALIDATION_FAILED);
        assert!(message.contains("аргумент «id» поля «confirmCompletion»"), "{message}");
    }

    #[test]
    fn error_with_code_is_kept() {
        let mut error = ServerError::new("Заявка не найдена", None);
        let mut extensions = ErrorExtensionValues::default();
        extensions.set("code", "TICKET_NOT_FOUND");
        error.extensions = Some(extensions);
        let mut errors = vec![error];
        localize_errors(&mut errors);
        assert_eq!(errors[0].message, "Заявка не найдена");
    }

    #[test]
    fn error_without_code_gets_one() {
        let mut errors = vec![ServerError::new("Unknown field \"x\" on type \"Query\".", None)];
        localize_errors(&mut errors);
        let code = errors[0].extensions.as_ref().and_then(|extensions| extensions.get("code").cloned());
        assert_eq!(code, Some(Value::from(VALIDATION_FAILED)));
    }
}
