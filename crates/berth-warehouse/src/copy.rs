//! Each warehouse's bulk command for one staged Parquet file: sqlparser ASTs (Snowflake `COPY
//! INTO`, Redshift `COPY`), the two statements sqlparser 0.62 has no AST for printed from AST
//! parts ([`SqlStatement::DatabricksCopyInto`], Redshift's `SERIALIZETOJSON`), and BigQuery's
//! load job as the JSON body of `jobs.insert`.

use berth_destination::{Error, Result};
use berth_model::{DataType, Secret, Table};
use berth_plan::sqlparser::ast::helpers::key_value_options::{
    KeyValueOption, KeyValueOptionKind, KeyValueOptions, KeyValueOptionsDelimiter,
};
use berth_plan::sqlparser::ast::helpers::stmt_data_loading::StageParamsObject;
use berth_plan::sqlparser::ast::{
    CopyIntoSnowflakeKind, CopyLegacyOption, CopySource, CopyTarget, IamRoleKind, Ident, ObjectName, Statement, Value,
};
use berth_plan::{SqlDialect, SqlStatement};
use serde_json::json;

use crate::Warehouse;
use crate::stage::{BucketObject, Credentials, StageAccess};

/// The command that loads one staged file.
#[derive(Debug, Clone, PartialEq)]
pub enum LoadCommand {
    /// A statement (run with the job's journal row, in one transaction where the warehouse has
    /// them).
    Sql(SqlStatement),
    /// A BigQuery load job: the body of `POST /bigquery/v2/projects/{project}/jobs`.
    BigQueryJob(serde_json::Value),
}

impl std::fmt::Display for LoadCommand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Sql(statement) => statement.fmt(f),
            Self::BigQueryJob(body) => write!(f, "BigQuery load job {body}"),
        }
    }
}

/// What a load command is built from.
#[derive(Debug, Clone)]
pub struct CopySpec<'a> {
    /// The warehouse.
    pub warehouse: Warehouse,
    /// Its dialect.
    pub dialect: &'a SqlDialect,
    /// The dataset the job loads into (final or staging).
    pub dataset: &'a str,
    /// The table, from the package schema.
    pub table: &'a Table,
    /// Where the file is.
    pub file: &'a BucketObject,
    /// How the warehouse reads it.
    pub access: &'a StageAccess,
    /// Keys to forward with [`StageAccess::ForwardCredentials`] (redacted for printing).
    pub credentials: &'a Credentials,
    /// The key prefix of a Snowflake named stage (the staging location's).
    pub stage_prefix: &'a str,
    /// BigQuery project and location.
    pub project: &'a str,
    /// BigQuery location (`US`, `EU`, a region), empty for the default.
    pub location: &'a str,
    /// The load id and the job's file name (BigQuery's job id is derived from them, so a resumed
    /// load finds the job it started instead of loading the file twice).
    pub load_id: &'a str,
    /// The job file name.
    pub job_name: &'a str,
    /// `Some(run)` when the loader emptied the table earlier in this run (`run`: unique to the
    /// run): the file loads again even if the table loaded it before it was emptied (Databricks
    /// `'force' = 'true'`; a BigQuery job id of this run, not one an earlier run finished).
    pub emptied: Option<&'a str>,
}

/// The load command for one staged file. A statement that forwards the bucket's keys carries
/// them as a [`Secret`] ([`SqlStatement::WithSecrets`]): it prints with every key as `***`, and
/// only the send path sees them.
pub fn load_command(spec: &CopySpec<'_>) -> Result<LoadCommand> {
    let command = command_with_keys(spec)?;
    if spec.access != &StageAccess::ForwardCredentials {
        return Ok(command);
    }
    let LoadCommand::Sql(sent) = command else {
        return Ok(command);
    };
    let redacted = spec.credentials.redacted();
    let shown = command_with_keys(&CopySpec {
        credentials: &redacted,
        ..spec.clone()
    })?;
    Ok(LoadCommand::Sql(match shown {
        LoadCommand::Sql(shown) => SqlStatement::WithSecrets {
            shown: Box::new(shown),
            sent: Secret::new(sent.to_string()),
        },
        LoadCommand::BigQueryJob(_) => sent,
    }))
}

/// [`load_command`] with the keys of `spec.credentials` in its text.
fn command_with_keys(spec: &CopySpec<'_>) -> Result<LoadCommand> {
    spec.access
        .check(spec.warehouse, spec.file.kind)
        .map_err(|reason| config(spec.warehouse, reason))?;
    let url = spec
        .file
        .url_for(spec.warehouse)
        .map_err(|reason| config(spec.warehouse, reason))?;
    let table = spec.dialect.table_name(spec.dataset, &spec.table.name);
    Ok(match spec.warehouse {
        Warehouse::Snowflake => LoadCommand::Sql(snowflake_copy(spec, table, url)?.into()),
        Warehouse::Redshift => LoadCommand::Sql(redshift_copy(spec, table, url)?),
        Warehouse::Databricks => LoadCommand::Sql(SqlStatement::DatabricksCopyInto {
            table,
            from: url,
            credentials: forwarded(
                spec,
                &[
                    ("AWS_ACCESS_KEY", |c| c.aws_key_id.clone()),
                    ("AWS_SECRET_KEY", |c| c.aws_secret_key.clone()),
                    ("AWS_SESSION_TOKEN", |c| c.aws_token.clone()),
                    ("AZURE_SAS_TOKEN", |c| c.azure_sas_token.clone()),
                ],
            )?,
            force: spec.emptied.is_some(),
        }),
        Warehouse::BigQuery => LoadCommand::BigQueryJob(bigquery_job(spec, url)),
    })
}

fn config(warehouse: Warehouse, reason: String) -> Error {
    Error::Config {
        destination: warehouse.name().into(),
        reason,
    }
}

type Pick = fn(&Credentials) -> Option<String>;

/// The forwarded keys, in the order given, when the access forwards them.
fn forwarded(spec: &CopySpec<'_>, keys: &[(&str, Pick)]) -> Result<Vec<(String, String)>> {
    if spec.access != &StageAccess::ForwardCredentials {
        return Ok(Vec::new());
    }
    let out: Vec<(String, String)> = keys
        .iter()
        .filter_map(|(name, pick)| pick(spec.credentials).map(|v| (name.to_string(), v)))
        .collect();
    if out.is_empty() {
        return Err(config(
            spec.warehouse,
            "forward_credentials is set but no keys are configured for the bucket (AWS_ACCESS_KEY_ID/\
             AWS_SECRET_ACCESS_KEY, AZURE_STORAGE_SAS_KEY, or berth.toml [storage.\"<url>\"])"
                .into(),
        ));
    }
    Ok(out)
}

fn kv(name: &str, value: Value) -> KeyValueOption {
    KeyValueOption {
        option_name: name.into(),
        option_value: KeyValueOptionKind::Single(value.with_empty_span()),
    }
}

fn options(options: Vec<KeyValueOption>) -> KeyValueOptions {
    KeyValueOptions {
        options,
        delimiter: KeyValueOptionsDelimiter::Space,
    }
}

/// `COPY INTO "DS"."T" FROM 's3://…' STORAGE_INTEGRATION=… | CREDENTIALS=(…) | FROM @stage
/// FILES=(…)`, Parquet with logical types, columns matched by name, aborting on any bad row.
fn snowflake_copy(spec: &CopySpec<'_>, table: ObjectName, url: String) -> Result<Statement> {
    let mut stage_params = StageParamsObject {
        url: None,
        encryption: options(Vec::new()),
        endpoint: None,
        storage_integration: None,
        credentials: options(Vec::new()),
    };
    let mut files = None;
    let from = match spec.access {
        StageAccess::NamedStage(stage) => {
            let prefix = format!("{}/", spec.stage_prefix.trim_end_matches('/'));
            let relative = spec.file.key.strip_prefix(&prefix).ok_or_else(|| {
                config(
                    spec.warehouse,
                    format!("`{url}` is not under the named stage's prefix `{prefix}`"),
                )
            })?;
            files = Some(vec![relative.to_string()]);
            ObjectName::from(vec![Ident::new(format!("@{stage}"))])
        }
        access => {
            if let StageAccess::StorageIntegration(name) = access {
                stage_params.storage_integration = Some(name.clone());
            }
            let keys: Vec<(String, String)> = if spec.file.kind == berth_model::store::StoreKind::Azure {
                forwarded(spec, &[("AZURE_SAS_TOKEN", |c| c.azure_sas_token.clone())])?
            } else {
                forwarded(
                    spec,
                    &[
                        ("AWS_KEY_ID", |c| c.aws_key_id.clone()),
                        ("AWS_SECRET_KEY", |c| c.aws_secret_key.clone()),
                        ("AWS_TOKEN", |c| c.aws_token.clone()),
                    ],
                )?
            };
            stage_params.credentials = options(
                keys.into_iter()
                    .map(|(k, v)| kv(&k, Value::SingleQuotedString(v)))
                    .collect(),
            );
            ObjectName::from(vec![Ident::with_quote('\'', url)])
        }
    };
    let word = |w: &str| Value::Placeholder(w.into());
    // Column names match case-sensitively only when the dialect keeps case; Snowflake folds to
    // upper case, so Parquet's lower-case names match case-insensitively.
    Ok(Statement::CopyIntoSnowflake {
        // sqlparser 0.62 prints a table load's copy options as `COPY_OPTIONS=(…)`, the CREATE
        // STAGE form; `Location` prints them inline, the form COPY INTO <table> takes.
        kind: CopyIntoSnowflakeKind::Location,
        into: table,
        into_columns: None,
        from_obj: Some(from),
        from_obj_alias: None,
        stage_params,
        from_transformations: None,
        from_query: None,
        files,
        pattern: None,
        file_format: options(vec![
            kv("TYPE", word("PARQUET")),
            kv("BINARY_AS_TEXT", Value::Boolean(false)),
            kv("USE_LOGICAL_TYPE", Value::Boolean(true)),
        ]),
        copy_options: options(vec![
            kv("MATCH_BY_COLUMN_NAME", word("CASE_INSENSITIVE")),
            kv("ON_ERROR", word("ABORT_STATEMENT")),
        ]),
        validation_mode: None,
        partition: None,
    })
}

/// `COPY "ds"."t" FROM 's3://…' PARQUET [SERIALIZETOJSON] IAM_ROLE '…' | CREDENTIALS '…'`.
fn redshift_copy(spec: &CopySpec<'_>, table: ObjectName, url: String) -> Result<SqlStatement> {
    let authorization = match spec.access {
        StageAccess::IamRole(arn) => CopyLegacyOption::IamRole(IamRoleKind::Arn(arn.clone())),
        _ => {
            let keys = forwarded(
                spec,
                &[
                    ("aws_access_key_id", |c| c.aws_key_id.clone()),
                    ("aws_secret_access_key", |c| c.aws_secret_key.clone()),
                    ("token", |c| c.aws_token.clone()),
                ],
            )?;
            CopyLegacyOption::Credentials(
                keys.iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(";"),
            )
        }
    };
    // JSON columns are SUPER; Parquet carries them as strings.
    let serialize_to_json = spec.table.columns.values().any(|c| c.data_type == Some(DataType::Json));
    if serialize_to_json {
        return Ok(SqlStatement::RedshiftCopy {
            table,
            from: url,
            serialize_to_json,
            authorization,
        });
    }
    // Redshift takes no MAXERROR for columnar formats: any bad row fails the COPY.
    Ok(Statement::Copy {
        source: CopySource::Table {
            table_name: table,
            columns: Vec::new(),
        },
        to: false,
        target: CopyTarget::File { filename: url },
        options: Vec::new(),
        legacy_options: vec![CopyLegacyOption::Parquet, authorization],
        values: Vec::new(),
    }
    .into())
}

/// A BigQuery load job: append to an existing table (the migration created it), no bad records,
/// a job id derived from the load and file.
fn bigquery_job(spec: &CopySpec<'_>, url: String) -> serde_json::Value {
    let job_id = bigquery_job_id(spec.load_id, spec.dataset, &spec.table.name, spec.job_name);
    let mut reference = json!({
        "projectId": spec.project,
        "jobId": match spec.emptied {
            None => job_id,
            Some(run) => format!("{job_id}_{run}"),
        },
    });
    if !spec.location.is_empty() {
        reference["location"] = json!(spec.location);
    }
    json!({
        "jobReference": reference,
        "configuration": {
            "load": {
                "sourceUris": [url],
                "sourceFormat": "PARQUET",
                "destinationTable": {
                    "projectId": spec.project,
                    "datasetId": spec.dialect.stored_name(spec.dataset),
                    "tableId": spec.dialect.stored_name(&spec.table.name),
                },
                "writeDisposition": "WRITE_APPEND",
                "createDisposition": "CREATE_NEVER",
                "maxBadRecords": 0,
                "parquetOptions": { "enableListInference": true },
                "decimalTargetTypes": ["NUMERIC", "BIGNUMERIC", "STRING"],
            }
        },
        "labels": { "loader": "berth" },
    })
}

/// `berth_<load id>_<hash of dataset, table and file>`: stable across runs of the same load (a
/// resumed load re-attaches to the job instead of loading the file twice), unique per file.
pub fn bigquery_job_id(load_id: &str, dataset: &str, table: &str, job_name: &str) -> String {
    let digest = ring::digest::digest(
        &ring::digest::SHA256,
        format!("{dataset}\0{table}\0{job_name}").as_bytes(),
    );
    let hex: String = digest.as_ref()[..10].iter().map(|b| format!("{b:02x}")).collect();
    let load: String = load_id
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    format!("berth_{load}_{hex}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_keys_print_as_stars_and_are_sent() {
        let file = BucketObject::parse("s3://bucket/p/t.parquet", None).expect("object");
        let table = Table::new("t".to_string(), Vec::new());
        let credentials = Credentials {
            aws_key_id: Some("AKIAEXAMPLEKEY".into()),
            aws_secret_key: Some("very-secret-value".into()),
            ..Credentials::default()
        };
        for warehouse in [Warehouse::Snowflake, Warehouse::Redshift, Warehouse::Databricks] {
            let dialect = warehouse.dialect();
            let spec = CopySpec {
                warehouse,
                dialect: &dialect,
                dataset: "ds",
                table: &table,
                file: &file,
                access: &StageAccess::ForwardCredentials,
                credentials: &credentials,
                stage_prefix: "",
                project: "",
                location: "",
                load_id: "1",
                job_name: "t.1.parquet",
                emptied: None,
            };
            let Ok(LoadCommand::Sql(statement)) = load_command(&spec) else {
                panic!("{warehouse}: a statement");
            };
            assert!(matches!(statement, SqlStatement::WithSecrets { .. }), "{warehouse}");
            for printed in [statement.to_string(), format!("{statement:?}")] {
                assert!(
                    !printed.contains("very-secret-value") && !printed.contains("AKIAEXAMPLEKEY"),
                    "{printed}"
                );
            }
            let sent = statement.text_to_send();
            assert!(
                sent.contains("very-secret-value") && sent.contains("AKIAEXAMPLEKEY"),
                "{warehouse}: {sent}"
            );
        }
    }
}
