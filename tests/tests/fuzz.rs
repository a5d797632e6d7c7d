//! Property tests that feed mangled input to every import format and to the GraphQL schema,
//! seeded from the corpus in `tests/fuzz/corpus`. No input may panic. Every GraphQL error must
//! carry a code, and a rejected import file a code of its own. The case counts keep the run
//! within seconds; `PROPTEST_CASES` raises them for a longer session.

mod common;

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use async_graphql::{Request, Variables};
use common::services;
use opencity_api::auth::Principal;
use opencity_api::cli::DemoOptions;
use opencity_api::graphql::localize::localize_errors;
use opencity_api::graphql::{build_schema, ApiState, OpenCitySchema};
use opencity_api::import::load_demo;
use opencity_domain::access::Role;
use opencity_fixtures::import::{parse_file, ImportFormat};
use opencity_projections::runner::ReadModel;
use opencity_store::Store;
use proptest::prelude::*;
use serde_json::json;

/// Returns the configuration with `PROPTEST_CASES` cases when it is set, else `default`.
fn config(default: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|cases| cases.parse().ok()).unwrap_or(default);
    ProptestConfig::with_cases(cases)
}

fn corpus(kind: &str) -> Vec<Vec<u8>> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus").join(kind);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|error| panic!("corpus {}: {error}", dir.display()))
        .map(|entry| entry.expect("corpus entry").path())
        .collect();
    files.sort();
    files.iter().map(|path| std::fs::read(path).expect("corpus file")).collect()
}

/// One change to an input: what a truncated upload, a broken editor or a hostile client does.
#[derive(Debug, Clone)]
enum Edit {
    Truncate(usize),
    FlipByte(usize, u8),
    Insert(usize, Vec<u8>),
    Remove(usize, usize),
    DuplicateLine(usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    let special = prop::sample::select(vec![
        b"\"".to_vec(),
        b",".to_vec(),
        b"\n".to_vec(),
        b"\r\n".to_vec(),
        b"{".to_vec(),
        b"}".to_vec(),
        b"[".to_vec(),
        b"\\".to_vec(),
        b"\xff\xfe".to_vec(),
        b"\xd0".to_vec(),
        "\u{0}".as_bytes().to_vec(),
        "9999-99-99 99:99:99".as_bytes().to_vec(),
        "-1e309".as_bytes().to_vec(),
        "Заявка".as_bytes().to_vec(),
        "$".repeat(40).into_bytes(),
    ]);
    prop_oneof![
        any::<usize>().prop_map(Edit::Truncate),
        (any::<usize>(), any::<u8>()).prop_map(|(at, byte)| Edit::FlipByte(at, byte)),
        (any::<usize>(), special).prop_map(|(at, bytes)| Edit::Insert(at, bytes)),
        (any::<usize>(), 1..64usize).prop_map(|(at, len)| Edit::Remove(at, len)),
        any::<usize>().prop_map(Edit::DuplicateLine),
    ]
}

fn apply(mut input: Vec<u8>, edits: &[Edit]) -> Vec<u8> {
    for edit in edits {
        let len = input.len().max(1);
        match edit {
            Edit::Truncate(at) => input.truncate(at % len),
            Edit::FlipByte(at, byte) => {
                if !input.is_empty() {
                    let index = at % input.len();
                    input[index] ^= byte;
                }
            }
            Edit::Insert(at, bytes) => {
                let index = at % (input.len() + 1);
                input.splice(index..index, bytes.iter().copied());
            }
            Edit::Remove(at, count) => {
                let start = at % len;
                let end = (start + count).min(input.len());
                if start < end {
                    input.drain(start..end);
                }
            }
            Edit::DuplicateLine(at) => {
                let lines: Vec<&[u8]> = input.split(|byte| *byte == b'\n').collect();
                let line = lines[at % lines.len()].to_vec();
                input.push(b'\n');
                input.extend(line);
            }
        }
    }
    input
}

/// Returns a corpus file with a few edits, or bytes without any structure.
fn mangled(seeds: Vec<Vec<u8>>) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => (prop::sample::select(seeds), prop::collection::vec(edit(), 1..6)).prop_map(|(seed, edits)| apply(seed, &edits)),
        1 => prop::collection::vec(any::<u8>(), 0..512),
    ]
}

fn check_import(format: ImportFormat, bytes: &[u8]) -> Result<(), TestCaseError> {
    match parse_file(format, bytes) {
        Ok(parsed) => {
            for error in &parsed.errors {
                prop_assert!(!error.code.is_empty(), "a record error without a code: {error:?}");
                prop_assert!(!error.message.is_empty(), "a record error without a message: {error:?}");
            }
        }
        Err(error) => prop_assert!(!error.code().is_empty(), "a file error without a code: {error:?}"),
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn boston311_input_never_panics(bytes in mangled(corpus("boston311"))) {
        check_import(ImportFormat::Boston311, &bytes)?;
    }

    #[test]
    fn la311_input_never_panics(bytes in mangled(corpus("la311"))) {
        check_import(ImportFormat::La311, &bytes)?;
    }

    #[test]
    fn open311_input_never_panics(bytes in mangled(corpus("open311"))) {
        check_import(ImportFormat::Open311, &bytes)?;
    }
}

/// A schema over a small demo city, shared by every GraphQL case, and a runtime to execute on.
struct Target {
    runtime: tokio::runtime::Runtime,
    schema: OpenCitySchema,
    ticket_id: String,
    _dir: tempfile::TempDir,
}

fn target() -> &'static Target {
    static TARGET: OnceLock<Target> = OnceLock::new();
    TARGET.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
        let (dir, config) = opencity_store::testing::temp_sqlite();
        let (schema, ticket_id) = runtime.block_on(async {
            let store = Store::open(&config).await.expect("store opens");
            let services = services();
            load_demo(&store, &services, &DemoOptions { demo_tickets: 30, demo_seed: 11 }).await.expect("demo loads");
            let read_model = ReadModel::open(store.clone()).await.expect("read model");
            read_model.catch_up().await.expect("caught up");
            let ticket_id = read_model.views().await.keys().next().expect("a ticket").to_string();
            (build_schema(ApiState { store, services, read_model: Arc::clone(&read_model) }), ticket_id)
        });
        Target { runtime, schema, ticket_id, _dir: dir }
    })
}

fn documents() -> Vec<Vec<u8>> {
    let text = String::from_utf8(corpus("graphql").concat()).expect("UTF-8 corpus");
    text.lines().filter(|line| !line.trim().is_empty()).map(|line| line.as_bytes().to_vec()).collect()
}

/// Returns a corpus document as it is (so that the resolvers run with mangled variables), with edits,
/// or random bytes.
fn graphql_documents() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        1 => prop::sample::select(documents()),
        2 => mangled(documents()),
    ]
}

/// Variables as a client could send them: the right names with values of any JSON shape.
fn variables() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<f64>().prop_map(|number| json!(number)),
        ".{0,40}".prop_map(serde_json::Value::from),
    ];
    let value = leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
            prop::collection::btree_map("[a-zA-Z]{1,12}", inner, 0..4)
                .prop_map(|map| serde_json::Value::Object(map.into_iter().collect())),
        ]
    });
    (value.clone(), value).prop_map(|(input, id)| json!({ "input": input, "id": id }))
}

proptest! {
    #![proptest_config(config(384))]

    #[test]
    fn graphql_input_never_panics(document in graphql_documents(), variables in variables(), use_real_id in any::<bool>()) {
        let target = target();
        let query = String::from_utf8_lossy(&document).into_owned();
        let mut variables = variables;
        if use_real_id {
            variables["id"] = json!(target.ticket_id);
        }
        let principal = Principal { token_id: uuid::Uuid::nil(), role: Role::Admin, subject: "fuzz".into() };
        let request = Request::new(query).variables(Variables::from_json(variables)).data(principal);
        let mut response = target.runtime.block_on(target.schema.execute(request));
        localize_errors(&mut response.errors);
        for error in &response.errors {
            let code = error.extensions.as_ref().and_then(|extensions| extensions.get("code"));
            prop_assert!(code.is_some(), "an error without a code: {error:?}");
            prop_assert!(!error.message.is_empty());
        }
    }
}

/// The unchanged corpus documents are valid GraphQL, so the mangled ones start from real requests.
#[test]
fn graphql_corpus_documents_parse() {
    for document in documents() {
        let text = String::from_utf8(document).expect("UTF-8");
        assert!(async_graphql::parser::parse_query(&text).is_ok(), "{text}");
    }
}
