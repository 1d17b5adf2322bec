//! The warehouses that read staged files themselves (Snowflake, BigQuery, Redshift, Databricks):
//! the full statement sequence of a package per warehouse pinned by snapshots and parsed back by
//! sqlparser; a whole load into Snowflake's SQL API (a scripted server checking every request)
//! with the files staged in a real S3 server; the BigQuery and Databricks clients' requests and
//! error handling; Redshift's session (PostgreSQL's protocol) against a real server.

use std::sync::{Arc, Mutex};

use berth::destination::{Destination, ErrorKind};
use berth::loader::explain::{ExplainOptions, Phase, Step, explain};
use berth::model::{LoadPackage, PackageLocation};
use berth::plan::sqlparser::parser::Parser;
use berth::plan::{PlanOptions, SqlStatement, dialects};
use berth::warehouse::api::Secret;
use berth::warehouse::api::bigquery::{BigQueryClient, BigQueryConfig, TokenSource};
use berth::warehouse::api::databricks::{DatabricksAuth, DatabricksClient, DatabricksConfig};
use berth::warehouse::{Warehouse, WarehouseDestination, WarehouseOptions};
use berth_tests::http::{Received, Reply, TestServer};
use berth_tests::s3::S3Server;

fn select(sql: &str) -> berth::plan::sqlparser::ast::Statement {
    let dialect = berth::plan::sqlparser::dialect::GenericDialect {};
    Parser::parse_sql(&dialect, sql).expect("sql").remove(0)
}

fn last_package(scenario: &str) -> std::path::PathBuf {
    berth_tests::scenario_packages("postgres", scenario)
        .pop()
        .expect("a package")
}

async fn plan_for(
    destination: &str,
    staging: &str,
    package: &std::path::Path,
) -> (Vec<Phase>, berth::plan::SqlDialect) {
    let (dialect, caps) = berth::planning_dialect(destination).expect("dialect");
    let jobs = berth::job_steps(destination, Some(staging)).expect("job steps");
    let package = LoadPackage::open(PackageLocation::local(package).expect("path"))
        .await
        .expect("open");
    let options = ExplainOptions {
        plan: PlanOptions {
            dataset: "ds".into(),
            replace_strategy: caps.replace_strategies[0],
            widen_types: false,
        },
        assume_empty: false,
        jobs,
    };
    (
        explain(&package, &dialect, &caps, &options).await.expect("plan"),
        dialect,
    )
}

/// Every phase, statements and notes, timestamps replaced.
fn render(phases: &[Phase]) -> String {
    let mut out = String::new();
    for phase in phases {
        out.push_str(&format!("-- {}\n", phase.title));
        for step in &phase.steps {
            match step {
                Step::Sql(statement) => out.push_str(&format!("{statement};\n")),
                Step::Note(note) => out.push_str(&format!("-- {note}\n")),
            }
        }
    }
    regex_lite_timestamps(&out)
}

/// Replaces `'YYYY-MM-DD HH:MM:SS.ffffff+00:00'` literals by `'<now>'`.
fn regex_lite_timestamps(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let rest = &bytes[i..];
        let is_stamp = rest.len() >= 34
            && rest[0] == b'\''
            && rest[1..5].iter().all(u8::is_ascii_digit)
            && rest[5] == b'-'
            && &rest[27..34] == b"+00:00'";
        if is_stamp {
            out.extend_from_slice(b"'<now>'");
            i += 34;
        } else {
            out.push(rest[0]);
            i += 1;
        }
    }
    String::from_utf8(out).expect("utf-8")
}

/// Every statement parses back in the warehouse's sqlparser dialect, but for the two sqlparser
/// 0.62 has no grammar for (Databricks `COPY INTO`, Redshift `COPY … SERIALIZETOJSON`), which
/// are counted and returned.
fn parse_back(dialect: &berth::plan::SqlDialect, phases: &[Phase]) -> Vec<String> {
    let parser = dialects::parser_dialect(dialect);
    let mut unparsed = Vec::new();
    for step in phases.iter().flat_map(|p| &p.steps) {
        let Step::Sql(statement) = step else { continue };
        let text = statement.to_string();
        if matches!(
            statement,
            SqlStatement::DatabricksCopyInto { .. } | SqlStatement::RedshiftCopy { .. }
        ) {
            unparsed.push(text);
            continue;
        }
        let parsed = Parser::parse_sql(parser.as_ref(), &text)
            .unwrap_or_else(|e| panic!("{}: does not parse back ({e}):\n{text}", dialect.name));
        assert_eq!(parsed.len(), 1, "{text}");
    }
    unparsed
}

#[tokio::test]
async fn every_warehouse_plans_a_whole_package_that_parses_back() {
    let merge = last_package("merge_upsert");
    let cases = [
        (
            "snowflake",
            "snowflake://acct/DB?storage_integration=S3_INT",
            "s3://stage-bucket/berth",
        ),
        (
            "snowflake_stage",
            "snowflake://acct/DB?stage=BERTH_STAGE",
            "s3://stage-bucket/berth",
        ),
        (
            "snowflake_keys",
            "snowflake://acct/DB?forward_credentials=true",
            "s3://stage-bucket/berth",
        ),
        ("bigquery", "bigquery://my-project/EU", "gs://stage-bucket/berth"),
        (
            "redshift",
            "redshift://loader@cluster:5439/dev?iam_role=arn:aws:iam::123:role/load",
            "s3://stage-bucket/berth",
        ),
        (
            "databricks",
            "databricks://dbc-1.cloud.databricks.com/wh1?catalog=main",
            "s3://stage-bucket/berth",
        ),
    ];
    let jobs = std::fs::read_dir(merge.join("new_jobs")).expect("jobs").count();
    for (name, destination, staging) in cases {
        let (phases, dialect) = plan_for(destination, staging, &merge).await;
        let text = render(&phases);
        let unparsed = parse_back(&dialect, &phases);
        let loads = text.matches("COPY ").count() + text.matches("BigQuery load job (POST").count();
        assert_eq!(loads, jobs, "{name}: a load command per job:\n{text}");
        assert_eq!(
            text.lines()
                .filter(|l| l.starts_with("INSERT INTO") && l.to_ascii_lowercase().contains("_berth_journal"))
                .count(),
            jobs + 1,
            "{name}: a journal row per job and the follow-up's"
        );
        assert!(!text.contains("through the bulk path"), "{name}");
        if name == "databricks" {
            assert_eq!(unparsed.len(), jobs, "{name}: only COPY INTO is left unparsed");
        } else {
            assert!(unparsed.is_empty(), "{name}: {unparsed:?}");
        }
        if name == "snowflake_keys" {
            assert!(text.contains("AWS_SECRET_KEY='***'"), "{text}");
        }
        insta::assert_snapshot!(format!("warehouse_{name}"), text);
    }
}

#[tokio::test]
async fn redshift_reads_json_columns_with_serializetojson() {
    // A package with a JSON column: Redshift's COPY needs SERIALIZETOJSON for SUPER columns.
    let package = last_package("append_types");
    let schema: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(package.join("schema.json")).expect("schema")).expect("json");
    let has_json = schema["tables"].as_object().expect("tables").values().any(|t| {
        t["columns"]
            .as_object()
            .is_some_and(|c| c.values().any(|c| c["data_type"] == "json"))
    });
    let (phases, dialect) = plan_for(
        "redshift://loader@cluster:5439/dev?iam_role=arn:aws:iam::123:role/load",
        "s3://stage-bucket/berth",
        &package,
    )
    .await;
    let unparsed = parse_back(&dialect, &phases);
    let text = render(&phases);
    if has_json {
        assert!(
            !unparsed.is_empty()
                && unparsed
                    .iter()
                    .all(|s| s.contains(" PARQUET SERIALIZETOJSON IAM_ROLE ")),
            "{unparsed:?}"
        );
    } else {
        assert!(unparsed.is_empty());
    }
    assert!(text.contains("IAM_ROLE 'arn:aws:iam::123:role/load'"), "{text}");
}

#[test]
fn bad_access_settings_are_refused_up_front() {
    let options = |staging: &str| WarehouseOptions {
        staging: Some(staging.into()),
        env: Some([("SNOWFLAKE_TOKEN".to_string(), "t0ken-value".to_string())].into()),
        ..Default::default()
    };
    let gcs = WarehouseDestination::from_url("snowflake://acct/DB?forward_credentials=true", options("gs://b/p"))
        .expect_err("Snowflake cannot take keys for GCS");
    assert!(gcs.to_string().contains("storage integration"), "{gcs}");
    let none = WarehouseDestination::from_url("snowflake://acct/DB", options("s3://b/p")).expect_err("no access");
    assert!(none.to_string().contains("storage_integration"), "{none}");
    let token = WarehouseDestination::from_url("snowflake://u:secret-token@acct/DB", options("s3://b/p"))
        .expect_err("tokens never go in URLs");
    assert!(!token.to_string().contains("secret-token"), "{token}");
    let no_token = WarehouseDestination::from_url(
        "databricks://host/wh",
        WarehouseOptions {
            env: Some(Default::default()),
            ..Default::default()
        },
    )
    .expect_err("token needed");
    assert!(no_token.to_string().contains("DATABRICKS_TOKEN"), "{no_token}");
    let unknown = WarehouseDestination::from_url(
        "snowflake://acct/DB?storage_integration=I&colour=blue",
        options("s3://b/p"),
    )
    .expect_err("unknown option");
    assert!(unknown.to_string().contains("colour"), "{unknown}");
}

/// A scripted Snowflake SQL API: catalog lookups answer "no tables", bookkeeping probes "no rows",
/// everything else succeeds; every request is kept.
fn snowflake_server() -> TestServer {
    scripted_snowflake(None)
}

/// The same, remembering loads when `loads` is given: once a statement inserts the `_DLT_LOADS`
/// row, the probes of `_DLT_LOADS` find it.
fn scripted_snowflake(loads: Option<Arc<Mutex<bool>>>) -> TestServer {
    TestServer::start_with(move |_, request: &Received| {
        let body = request.json();
        let statement = body["statement"].as_str().unwrap_or_default().to_string();
        if let Some(loads) = &loads {
            let mut committed = loads.lock().expect("lock");
            if statement.starts_with("INSERT INTO \"DS\".\"_DLT_LOADS\"") {
                *committed = true;
            }
            if *committed && statement.starts_with("SELECT") && statement.contains("\"_DLT_LOADS\"") {
                return Reply::Json(
                    200,
                    serde_json::json!({
                        "resultSetMetaData": { "numRows": 1, "rowType": [{ "name": "LOAD_ID" }],
                                               "partitionInfo": [{ "rowCount": 1 }] },
                        "data": [["loaded"]],
                        "code": "090001",
                        "statementHandle": "h-4",
                    })
                    .to_string(),
                );
            }
        }
        let empty = |columns: &[&str]| {
            let row_type: Vec<serde_json::Value> = columns.iter().map(|c| serde_json::json!({ "name": c })).collect();
            serde_json::json!({
                "resultSetMetaData": { "numRows": 0, "rowType": row_type, "partitionInfo": [{ "rowCount": 0 }] },
                "data": [],
                "code": "090001",
                "statementHandle": "h-1",
            })
            .to_string()
        };
        if statement.starts_with("SELECT") && statement.contains("\"INFORMATION_SCHEMA\"") {
            return Reply::Json(
                200,
                empty(&[
                    "TABLE_NAME",
                    "COLUMN_NAME",
                    "DATA_TYPE",
                    "IS_NULLABLE",
                    "NUMERIC_PRECISION",
                    "NUMERIC_SCALE",
                    "ORDINAL_POSITION",
                    "CHARACTER_MAXIMUM_LENGTH",
                    "DATETIME_PRECISION",
                ]),
            );
        }
        if statement.starts_with("SELECT") && statement.to_ascii_uppercase().contains("_BERTH_JOURNAL") {
            return Reply::Json(
                422,
                serde_json::json!({
                    "code": "002003",
                    "sqlState": "42S02",
                    "message": "SQL compilation error:\nObject 'DS._BERTH_JOURNAL' does not exist or not authorized.",
                    "statementHandle": "h-2",
                })
                .to_string(),
            );
        }
        if statement.starts_with("SELECT") {
            return Reply::Json(200, empty(&["X"]));
        }
        Reply::Json(
            200,
            serde_json::json!({ "data": [["Statement executed successfully."]], "statementHandle": "h-3" }).to_string(),
        )
    })
}

/// Warehouses have no advisory lock: two berth processes racing for one package in a bucket are
/// kept apart by a lease in the staging bucket (or, without one, next to the package), so every
/// file is COPYed once, the second process finds the package loaded, and the lease is gone after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_loaders_racing_for_a_bucket_package_into_snowflake_copy_each_file_once() {
    for staging in [Some("s3://stage/berth"), None] {
        let s3 = S3Server::start(&["packages", "stage"]);
        let api = scripted_snowflake(Some(Arc::new(Mutex::new(false))));
        let source = last_package("append_types");
        let load_id = source.file_name().expect("name").to_string_lossy().to_string();
        s3.upload_dir(&source, "packages", &format!("pipe/{load_id}")).await;
        let url = format!("s3://packages/pipe/{load_id}");
        let mut env: std::collections::BTreeMap<String, String> = s3.env().into_iter().collect();
        env.insert("SNOWFLAKE_TOKEN".into(), "sf-token".into());
        let load = || {
            let (url, env, storage) = (url.clone(), env.clone(), s3.storage_config());
            let api = api.url.clone();
            async move {
                let destination = WarehouseDestination::from_url(
                    &format!("snowflake://acct/ANALYTICS?forward_credentials=true&base_url={api}"),
                    WarehouseOptions {
                        staging: staging.map(String::from),
                        storage: storage.clone(),
                        env: Some(env),
                    },
                )
                .expect("open snowflake");
                let loader = berth::loader::Loader::new(Arc::new(destination) as Arc<dyn Destination>).with_options(
                    berth::loader::LoaderOptions {
                        dataset: Some("ds".into()),
                        ..Default::default()
                    },
                );
                let location = PackageLocation::parse_with(&url, &storage).expect("location");
                loader.load(location).await.expect("load")
            }
        };
        let (a, b) = tokio::join!(load(), load());
        let mut statuses = [format!("{:?}", a.status), format!("{:?}", b.status)];
        statuses.sort();
        let errors: Vec<String> = [&a, &b]
            .iter()
            .flat_map(|s| s.failed_jobs().filter_map(|j| j.error.clone()))
            .collect();
        assert_eq!(statuses, ["AlreadyLoaded", "Loaded"], "staging {staging:?}: {errors:?}");

        let copies = api
            .received()
            .iter()
            .filter(|r| r.json()["statement"].as_str().is_some_and(|s| s.contains("COPY INTO")))
            .count();
        let jobs = LoadPackage::open(PackageLocation::local(&source).expect("location"))
            .await
            .expect("package")
            .jobs
            .iter()
            .filter(|j| j.name.format.is_data())
            .count();
        assert!(jobs > 0);
        assert_eq!(copies, jobs, "each file COPYed once (staging {staging:?})");
        let leftovers: Vec<String> = [s3.keys("stage").await, s3.keys("packages").await]
            .concat()
            .into_iter()
            .filter(|k| k.contains("_berth_locks"))
            .collect();
        assert!(leftovers.is_empty(), "the lease is released: {leftovers:?}");
    }
}

/// The last package of `scenario`, copied into `work`.
fn copied_package(work: &std::path::Path, scenario: &str) -> std::path::PathBuf {
    let source = last_package(scenario);
    let package_dir = work.join(source.file_name().expect("name"));
    berth_tests::copy_tree(&source, &package_dir).expect("copy");
    package_dir
}

/// Snowflake at the scripted `api` (database `ANALYTICS`, warehouse `LOAD_WH` and `params`),
/// staging in `s3`, with the S3 keys forwarded and `env` (tokens) as its environment.
fn snowflake_staged_in_s3(api: &TestServer, s3: &S3Server, env: &[(&str, &str)], params: &str) -> WarehouseDestination {
    let mut vars: std::collections::BTreeMap<String, String> = s3.env().into_iter().collect();
    vars.extend(env.iter().map(|(k, v)| ((*k).to_string(), (*v).to_string())));
    WarehouseDestination::from_url(
        &format!(
            "snowflake://acct/ANALYTICS?warehouse=LOAD_WH{params}&forward_credentials=true&base_url={}",
            api.url
        ),
        WarehouseOptions {
            staging: Some("s3://stage/berth".into()),
            storage: s3.storage_config(),
            env: Some(vars),
        },
    )
    .expect("open snowflake")
}

/// Loads the package at `dir` into dataset `ds` of `destination`, completely.
async fn load_into_ds(destination: WarehouseDestination, dir: &std::path::Path) {
    let loader = berth::loader::Loader::new(Arc::new(destination) as Arc<dyn Destination>).with_options(
        berth::loader::LoaderOptions {
            dataset: Some("ds".into()),
            ..Default::default()
        },
    );
    let summary = loader
        .load_all(vec![PackageLocation::local(dir).expect("location")])
        .await
        .expect("load");
    assert!(summary.all_loaded(), "{summary:?}");
}

#[tokio::test]
async fn a_package_loads_into_snowflake_through_its_sql_api_with_files_staged_in_s3() {
    let s3 = S3Server::start(&["stage"]);
    let api = snowflake_server();
    let work = tempfile::tempdir().expect("tempdir");
    let package_dir = copied_package(work.path(), "append_types");
    let destination = snowflake_staged_in_s3(
        &api,
        &s3,
        &[
            ("SNOWFLAKE_TOKEN", "sf-token-do-not-print"),
            ("SNOWFLAKE_TOKEN_TYPE", "pat"),
        ],
        "&role=LOADER",
    );
    let shown = format!("{destination:?}");
    assert!(
        !shown.contains(berth_tests::s3::SECRET_KEY) && !shown.contains("sf-token-do-not-print"),
        "{shown}"
    );
    load_into_ds(destination, &package_dir).await;

    let requests = api.received();
    for request in &requests {
        assert_eq!(request.header("authorization"), Some("Bearer sf-token-do-not-print"));
        assert_eq!(
            request.header("x-snowflake-authorization-token-type"),
            Some("PROGRAMMATIC_ACCESS_TOKEN")
        );
        assert!(
            request.line.contains("/api/v2/statements?requestId="),
            "{}",
            request.line
        );
        let body = request.json();
        assert_eq!(body["database"], "ANALYTICS");
        assert_eq!(body["warehouse"], "LOAD_WH");
        assert_eq!(body["role"], "LOADER");
    }
    // Each job: COPY and its journal row in one transaction, from the file staged in S3.
    let copies: Vec<serde_json::Value> = requests
        .iter()
        .map(Received::json)
        .filter(|b| b["statement"].as_str().is_some_and(|s| s.contains("COPY INTO")))
        .collect();
    let jobs = std::fs::read_dir(package_dir.join("completed_jobs"))
        .map(|d| d.count())
        .unwrap_or_default();
    assert!(jobs > 0);
    assert_eq!(copies.len(), jobs, "one COPY per job");
    let staged = s3.keys("stage").await;
    for copy in &copies {
        let statement = copy["statement"].as_str().expect("statement");
        assert!(
            statement.starts_with("BEGIN TRANSACTION;\nCOPY INTO \"DS\"."),
            "{statement}"
        );
        assert!(
            statement.contains("\"_BERTH_JOURNAL\"") && statement.ends_with(";\nCOMMIT"),
            "{statement}"
        );
        assert_eq!(copy["parameters"]["MULTI_STATEMENT_COUNT"], "4");
        assert!(statement.contains(&format!("AWS_KEY_ID='{}'", berth_tests::s3::ACCESS_KEY)));
        let url = statement
            .split("FROM 's3://stage/")
            .nth(1)
            .and_then(|rest| rest.split('\'').next())
            .expect("staged url");
        assert!(staged.iter().any(|k| k == url), "{url} not in {staged:?}");
        assert!(url.starts_with("berth/ds/"), "{url}");
    }
    // Every staged object is Parquet (insert_values jobs were converted).
    let client = s3.client("stage");
    for key in &staged {
        let bytes = object_store::ObjectStoreExt::get(client.as_ref(), &object_store::path::Path::from(key.as_str()))
            .await
            .expect("get")
            .bytes()
            .await
            .expect("bytes");
        assert_eq!(&bytes[..4], b"PAR1", "{key}");
    }
    let last = requests.last().expect("requests").json();
    let statements: Vec<String> = requests
        .iter()
        .map(|r| r.json()["statement"].as_str().unwrap_or_default().to_string())
        .collect();
    assert!(
        statements
            .iter()
            .any(|s| s.starts_with("INSERT INTO \"DS\".\"_DLT_LOADS\"")),
        "the commit row: {last}"
    );
}

#[tokio::test]
async fn snowflake_errors_say_what_failed_without_the_token() {
    let api = TestServer::start(|_| {
        Reply::Json(
            422,
            r#"{"code":"002003","sqlState":"42S02","message":"Object 'DS.T' does not exist or not authorized."}"#
                .into(),
        )
    });
    let destination = WarehouseDestination::from_url(
        &format!("snowflake://acct/DB?storage_integration=I&base_url={}", api.url),
        WarehouseOptions {
            env: Some([("SNOWFLAKE_TOKEN".to_string(), "sf-token-do-not-print".to_string())].into()),
            ..Default::default()
        },
    )
    .expect("open");
    let error = destination
        .execute(vec![select("SELECT 1").into()], false)
        .await
        .expect_err("fails");
    assert_eq!(error.kind(), ErrorKind::UndefinedRelation);
    let text = error.to_string();
    assert!(text.contains("does not exist") && !text.contains("sf-token"), "{text}");
}

#[tokio::test]
async fn databricks_polls_running_statements_and_reads_every_chunk() {
    let polls = Arc::new(Mutex::new(0));
    let seen = Arc::clone(&polls);
    let api = TestServer::start_with(move |_, request: &Received| {
        if request.line.starts_with("POST /api/2.0/sql/statements") {
            return Reply::Json(200, r#"{"statement_id":"s-1","status":{"state":"PENDING"}}"#.into());
        }
        if request
            .line
            .starts_with("GET /api/2.0/sql/statements/s-1/result/chunks/1")
        {
            return Reply::Json(200, r#"{"chunk_index":1,"data_array":[["3","c"]]}"#.into());
        }
        let mut polls = seen.lock().expect("polls");
        *polls += 1;
        if *polls < 2 {
            return Reply::Json(200, r#"{"statement_id":"s-1","status":{"state":"RUNNING"}}"#.into());
        }
        Reply::Json(
            200,
            r#"{"statement_id":"s-1","status":{"state":"SUCCEEDED"},
                "manifest":{"schema":{"columns":[{"name":"id"},{"name":"name"}]}},
                "result":{"data_array":[["1","a"],["2",null]],"next_chunk_internal_link":"/api/2.0/sql/statements/s-1/result/chunks/1"}}"#
                .into(),
        )
    });
    let client = DatabricksClient::new(DatabricksConfig {
        base_url: api.url.clone(),
        auth: DatabricksAuth::Token(Secret::new("dapi-secret")),
        warehouse_id: "wh-1".into(),
        catalog: "main".into(),
    })
    .expect("client");
    let rows = client
        .run(&["SELECT id, name FROM `ds`.`t`".into()])
        .await
        .expect("run");
    assert_eq!(rows.columns, ["id", "name"]);
    assert_eq!(rows.rows.len(), 3);
    assert_eq!(rows.rows[1][1], None);
    let requests = api.received();
    let first = requests[0].json();
    assert_eq!(first["warehouse_id"], "wh-1");
    assert_eq!(first["catalog"], "main");
    assert_eq!(first["on_wait_timeout"], "CONTINUE");
    assert_eq!(first["format"], "JSON_ARRAY");
    assert!(
        requests
            .iter()
            .all(|r| r.header("authorization") == Some("Bearer dapi-secret"))
    );
    assert!(!format!("{client:?}").contains("dapi-secret"));

    let missing = TestServer::start(|_| {
        Reply::Json(
            200,
            r#"{"statement_id":"s-2","status":{"state":"FAILED","error":{"error_code":"BAD_REQUEST","message":"[TABLE_OR_VIEW_NOT_FOUND] The table or view `ds`.`_dlt_loads` cannot be found."}}}"#
                .into(),
        )
    });
    let client = DatabricksClient::new(DatabricksConfig {
        base_url: missing.url.clone(),
        auth: DatabricksAuth::Token(Secret::new("dapi-secret")),
        warehouse_id: "wh-1".into(),
        catalog: "main".into(),
    })
    .expect("client");
    let error = client.run(&["SELECT 1".into()]).await.expect_err("missing table");
    assert_eq!(error.kind(), ErrorKind::UndefinedRelation);
}

#[tokio::test]
async fn bigquery_load_jobs_reattach_after_a_lost_answer_and_queries_page() {
    let api = TestServer::start_with(|_, request: &Received| {
        let line = &request.line;
        if line.starts_with("POST /bigquery/v2/projects/proj/jobs") {
            // The job exists already: a resumed load.
            return Reply::Json(
                409,
                r#"{"error":{"code":409,"message":"Already Exists: Job proj:EU.berth_x","status":"ALREADY_EXISTS"}}"#
                    .into(),
            );
        }
        if line.starts_with("GET /bigquery/v2/projects/proj/jobs/") {
            return Reply::Json(
                200,
                r#"{"status":{"state":"DONE"},"statistics":{"load":{"outputRows":"42"}}}"#.into(),
            );
        }
        if line.starts_with("POST /bigquery/v2/projects/proj/queries") {
            return Reply::Json(200, r#"{"jobComplete":false,"jobReference":{"jobId":"q1"}}"#.into());
        }
        if line.contains("pageToken=p2") {
            return Reply::Json(
                200,
                r#"{"jobComplete":true,"schema":{"fields":[{"name":"n"}]},"rows":[{"f":[{"v":"2"}]}]}"#.into(),
            );
        }
        Reply::Json(
            200,
            r#"{"jobComplete":true,"schema":{"fields":[{"name":"n"}]},"rows":[{"f":[{"v":"1"}]}],"pageToken":"p2"}"#
                .into(),
        )
    });
    let client = BigQueryClient::new(BigQueryConfig {
        base_url: api.url.clone(),
        project: "proj".into(),
        location: "EU".into(),
        tokens: TokenSource::Fixed(Secret::new("ya29.secret")),
    })
    .expect("client");
    let job = serde_json::json!({ "jobReference": { "projectId": "proj", "jobId": "berth_x", "location": "EU" } });
    assert_eq!(client.load(&job).await.expect("load"), 42);
    let rows = client.run(&["SELECT 1 AS n".into()], false).await.expect("query");
    assert_eq!(
        rows.rows,
        vec![vec![Some("1".to_string())], vec![Some("2".to_string())]]
    );
    let requests = api.received();
    assert!(
        requests
            .iter()
            .all(|r| r.header("authorization") == Some("Bearer ya29.secret"))
    );
    assert!(
        requests[1].line.contains("/jobs/berth_x?location=EU"),
        "{}",
        requests[1].line
    );
    let query = requests[2].json();
    assert_eq!(query["useLegacySql"], false);
    assert_eq!(query["location"], "EU");
    assert!(query["requestId"].as_str().is_some_and(|id| id.len() == 36));
    let job_id = berth::warehouse::copy::bigquery_job_id("1795.1", "ds", "t", "t.abc.0.parquet");
    assert_eq!(
        job_id,
        berth::warehouse::copy::bigquery_job_id("1795.1", "ds", "t", "t.abc.0.parquet")
    );
    assert_ne!(
        job_id,
        berth::warehouse::copy::bigquery_job_id("1795.1", "ds", "t", "t.abd.0.parquet")
    );
    assert!(
        job_id.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
        "{job_id}"
    );

    let missing = TestServer::start(|_| {
        Reply::Json(
            404,
            r#"{"error":{"code":404,"message":"Not found: Table proj:ds._dlt_loads","errors":[{"reason":"notFound"}]}}"#.into(),
        )
    });
    let client = BigQueryClient::new(BigQueryConfig {
        base_url: missing.url.clone(),
        project: "proj".into(),
        location: String::new(),
        tokens: TokenSource::Fixed(Secret::new("ya29.secret")),
    })
    .expect("client");
    let error = client.run(&["SELECT 1".into()], false).await.expect_err("missing");
    assert_eq!(error.kind(), ErrorKind::UndefinedRelation);
    assert!(!error.to_string().contains("ya29"));
}

#[tokio::test]
async fn redshift_runs_its_statements_over_postgres_protocol() {
    let cluster = berth_tests::pg::PgCluster::start();
    let url = cluster
        .database_url("redshift_wire")
        .replacen("postgres://", "redshift://", 1);
    let destination = WarehouseDestination::from_url(
        &format!("{url}?iam_role=arn:aws:iam::1:role/r&sslmode=disable"),
        WarehouseOptions::default(),
    )
    .expect("open");
    assert_eq!(destination.warehouse(), Warehouse::Redshift);
    assert_eq!(destination.capabilities().dialect.name, "redshift");
    let batches = destination
        .query(select("SELECT 41 + 1 AS answer"))
        .await
        .expect("query");
    assert_eq!(batches[0].num_rows(), 1);
    // No advisory locks on Redshift, and no bucket to hold a lease without a staging bucket: a
    // local package cannot load into it anyway.
    let package = berth::model::LoadPackage::open(
        berth::model::PackageLocation::parse(
            &berth_tests::scenario_packages("postgres", "append_types")[0].to_string_lossy(),
        )
        .expect("location"),
    )
    .await
    .expect("package");
    assert!(destination.lock_load(&package, "ds").await.expect("lock").is_none());
}

#[tokio::test]
async fn snowflake_key_pair_authentication_signs_a_jwt_per_request() {
    let api = snowflake_server();
    let key = berth_tests::testdata().join("keys/snowflake-test-key.p8");
    let destination = WarehouseDestination::from_url(
        &format!(
            "snowflake://loader@myorg-acct/DB?storage_integration=I&base_url={}",
            api.url
        ),
        WarehouseOptions {
            env: Some([("SNOWFLAKE_PRIVATE_KEY_PATH".to_string(), key.display().to_string())].into()),
            ..Default::default()
        },
    )
    .expect("open with a key pair");
    destination.query(select("SELECT 1 AS X")).await.expect("query");
    let request = api.received().pop().expect("a request");
    assert_eq!(
        request.header("x-snowflake-authorization-token-type"),
        Some("KEYPAIR_JWT")
    );
    let token = request
        .header("authorization")
        .and_then(|h| h.strip_prefix("Bearer "))
        .expect("bearer");
    let claims = token.split('.').nth(1).expect("claims");
    use base64::Engine;
    let claims: serde_json::Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(claims)
            .expect("base64"),
    )
    .expect("json");
    assert_eq!(claims["sub"], "MYORG-ACCT.LOADER");
    assert!(
        claims["iss"]
            .as_str()
            .is_some_and(|i| i.ends_with("SHA256:EZIa0CARm0H7BSdLxjxeK85WmdlDpK892f1rbGn0rjA="))
    );
    let no_user = WarehouseDestination::from_url(
        "snowflake://myorg-acct/DB?storage_integration=I",
        WarehouseOptions {
            env: Some([("SNOWFLAKE_PRIVATE_KEY_PATH".to_string(), key.display().to_string())].into()),
            ..Default::default()
        },
    )
    .expect_err("the user is needed");
    assert!(no_user.to_string().contains("<user>@"), "{no_user}");
}

#[tokio::test]
async fn databricks_service_principals_get_oauth_tokens_once() {
    let api = TestServer::start_with(|_, request: &Received| {
        if request.line.starts_with("POST /oidc/v1/token") {
            return Reply::Json(
                200,
                r#"{"access_token":"oauth-access","token_type":"Bearer","expires_in":3600}"#.into(),
            );
        }
        Reply::Json(
            200,
            r#"{"statement_id":"s","status":{"state":"SUCCEEDED"},"manifest":{"schema":{"columns":[{"name":"x"}]}},"result":{"data_array":[["1"]]}}"#.into(),
        )
    });
    let client = DatabricksClient::new(DatabricksConfig {
        base_url: api.url.clone(),
        auth: DatabricksAuth::ClientCredentials {
            client_id: "sp-app-id".into(),
            client_secret: Secret::new("sp-secret"),
        },
        warehouse_id: "wh".into(),
        catalog: "main".into(),
    })
    .expect("client");
    client.run(&["SELECT 1".into(), "SELECT 2".into()]).await.expect("run");
    let requests = api.received();
    assert_eq!(requests.len(), 3, "one token request, then two statements");
    use base64::Engine;
    let basic = base64::engine::general_purpose::STANDARD.encode("sp-app-id:sp-secret");
    assert_eq!(
        requests[0].header("authorization"),
        Some(format!("Basic {basic}").as_str())
    );
    assert_eq!(requests[0].text(), "grant_type=client_credentials&scope=all-apis");
    assert!(
        requests[1..]
            .iter()
            .all(|r| r.header("authorization") == Some("Bearer oauth-access"))
    );
    assert!(!format!("{client:?}").contains("sp-secret"));
}

/// A package whose naming convention keeps case (`sql_cs_v1`) loads into Snowflake with its
/// names as they are — `"ds"."My_Table"`, `"ds"."_dlt_loads"` — as dlt's `adjust_capabilities`
/// makes Snowflake's identifiers case-sensitive for it; every statement spells them one way.
#[tokio::test]
async fn a_case_sensitive_package_keeps_its_names_in_snowflake() {
    let s3 = S3Server::start(&["stage"]);
    let api = snowflake_server();
    let work = tempfile::tempdir().expect("tempdir");
    let package_dir = copied_package(work.path(), "naming_case_sensitive");
    let destination = snowflake_staged_in_s3(&api, &s3, &[("SNOWFLAKE_TOKEN", "sf-token")], "");
    load_into_ds(destination, &package_dir).await;
    let statements: Vec<String> = api
        .received()
        .iter()
        .map(|r| r.json()["statement"].as_str().unwrap_or_default().to_string())
        // The `_dlt_version` row holds the schema's JSON, names as dlt wrote them.
        .filter(|s| !(s.contains("INSERT INTO") && s.to_ascii_lowercase().contains("_dlt_version")))
        .collect();
    let copies: Vec<&String> = statements.iter().filter(|s| s.contains("COPY INTO")).collect();
    assert!(
        copies.iter().any(|s| s.contains("COPY INTO \"ds\".\"My_Table\"")),
        "{copies:?}"
    );
    assert!(
        statements
            .iter()
            .any(|s| s.starts_with("INSERT INTO \"ds\".\"_dlt_loads\""))
    );
    // The catalog's own names stay Snowflake's (upper case); the names looked up are the package's.
    assert!(
        statements
            .iter()
            .any(|s| s.contains("FROM \"INFORMATION_SCHEMA\".\"COLUMNS\"") && s.contains("'My_Table'")),
        "the catalog lookup"
    );
    assert!(
        !statements
            .iter()
            .any(|s| s.contains("\"MY_TABLE\"") || s.contains("\"DS\"")),
        "a name folded to upper case"
    );
}
