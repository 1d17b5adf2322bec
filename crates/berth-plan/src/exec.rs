//! The follow-up plans executed by DataFusion itself, on in-memory Arrow tables.
//!
//! [`MemoryCatalog`] holds tables as Arrow batches and runs [`FollowupOp`]s on them: the scans
//! of each plan are pointed at the current contents and DataFusion executes it. This is the
//! reference result the SQL destinations are tested against (the same plans, no SQL in between),
//! and the path a destination without a SQL engine takes. berth-loader's `MemoryExecutor` runs
//! whole packages on it through the loader's own program and loop.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use arrow::array::{ArrayRef, BooleanArray, RecordBatch, UInt64Array, new_null_array};
use arrow::compute::{cast, concat_batches, filter_record_batch};
use arrow::datatypes::{DataType as ArrowType, Field, Schema as ArrowSchema, SchemaRef};
use datafusion::common::tree_node::Transformed;
use datafusion::datasource::{MemTable, provider_as_source};
use datafusion::logical_expr::builder::LogicalTableSource;
use datafusion::logical_expr::expr_fn::{exists, not_exists, out_ref_col};
use datafusion::logical_expr::{Expr, LogicalPlan, LogicalPlanBuilder, TableScanBuilder, lit};
use datafusion::prelude::SessionContext;

use crate::dialect::{NoQualify, SqlDialect};
use crate::error::{Error, Result};
use crate::followup::{FollowupOp, MergeInto, PlanBuilder, SOURCE_ALIAS, TARGET_ALIAS, TableRef};
use crate::load::PlanCapabilities;

const ROW_ID: &str = "__berth_row";

/// The dialect plans for [`MemoryCatalog`] are built in: names as they are, target aliased.
pub fn memory_dialect() -> SqlDialect {
    #[derive(Debug)]
    struct NoTypes;
    impl crate::TypeMapper for NoTypes {
        fn to_destination(
            &self,
            column: &berth_model::Column,
            _: &berth_model::Table,
        ) -> Result<datafusion::sql::sqlparser::ast::DataType> {
            Ok(crate::sql::type_named(
                column.data_type.map_or("text", berth_model::DataType::as_str),
                &[],
            ))
        }
        fn to_dlt_type(&self, _: &str, _: Option<u32>, _: Option<u32>) -> Option<berth_model::DataType> {
            None
        }
    }
    SqlDialect {
        supports_set_schema: true,
        case_sensitive_identifiers: true,
        typed_timestamps: true,
        ..SqlDialect::new(
            "memory",
            Arc::new(NoTypes),
            Arc::new(NoQualify(datafusion::sql::unparser::dialect::DefaultDialect {})),
            Arc::new(datafusion::sql::sqlparser::dialect::GenericDialect {}),
        )
        .with_max_identifier_length(1024)
    }
}

/// What the memory catalog supports: every replace and merge strategy berth plans.
pub fn memory_capabilities() -> PlanCapabilities {
    PlanCapabilities {
        replace_strategies: crate::ALL_REPLACE_STRATEGIES.to_vec(),
        merge_strategies: crate::PLANNED_MERGE_STRATEGIES.to_vec(),
    }
}

/// A table: its schema and rows.
#[derive(Debug, Clone)]
pub struct MemoryTable {
    /// Columns.
    pub schema: SchemaRef,
    /// Rows.
    pub batches: Vec<RecordBatch>,
}

impl MemoryTable {
    /// Rows it holds.
    pub fn rows(&self) -> usize {
        self.batches.iter().map(RecordBatch::num_rows).sum()
    }

    /// The rows as one batch with exactly `schema`'s columns (by name; missing ones are NULL).
    fn project_to(&self, schema: &SchemaRef) -> Result<RecordBatch> {
        let all = concat_batches(&self.schema, &self.batches)?;
        conform(&all, schema)
    }
}

/// Casts and reorders `batch` to `schema` by column name; columns it lacks are NULL.
pub fn conform(batch: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch> {
    let columns: Vec<ArrayRef> = schema
        .fields()
        .iter()
        .map(|field| match batch.schema().index_of(field.name()) {
            Ok(i) => Ok(cast(batch.column(i), field.data_type())?),
            Err(_) => Ok(new_null_array(field.data_type(), batch.num_rows())),
        })
        .collect::<Result<_>>()?;
    let options = arrow::array::RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
    Ok(RecordBatch::try_new_with_options(
        Arc::clone(schema),
        columns,
        &options,
    )?)
}

/// Nullable copy of a schema (tables hold any row their plans produce).
fn nullable(schema: &ArrowSchema) -> SchemaRef {
    Arc::new(ArrowSchema::new(
        schema
            .fields()
            .iter()
            .map(|f| Field::new(f.name(), f.data_type().clone(), true))
            .collect::<Vec<_>>(),
    ))
}

/// Tables in memory, by dataset and name.
#[derive(Debug, Default)]
pub struct MemoryCatalog {
    tables: BTreeMap<TableRef, MemoryTable>,
}

impl MemoryCatalog {
    /// An empty catalog.
    pub fn new() -> Self {
        Self::default()
    }

    /// The table at `at`.
    pub fn table(&self, at: &TableRef) -> Option<&MemoryTable> {
        self.tables.get(at)
    }

    /// Creates `at` with `schema`, or adds the columns it lacks.
    pub fn create_table(&mut self, at: TableRef, schema: &ArrowSchema) -> Result<()> {
        let schema = nullable(schema);
        match self.tables.get_mut(&at) {
            None => {
                self.tables.insert(
                    at,
                    MemoryTable {
                        schema,
                        batches: Vec::new(),
                    },
                );
            }
            Some(table) => {
                let mut fields: Vec<Field> = table.schema.fields().iter().map(|f| f.as_ref().clone()).collect();
                for field in schema.fields() {
                    if table.schema.index_of(field.name()).is_err() {
                        fields.push(field.as_ref().clone());
                    }
                }
                let widened = Arc::new(ArrowSchema::new(fields));
                table.batches = table
                    .batches
                    .iter()
                    .map(|b| conform(b, &widened))
                    .collect::<Result<_>>()?;
                table.schema = widened;
            }
        }
        Ok(())
    }

    /// Appends rows (matched to the table's columns by name).
    pub fn append(&mut self, at: &TableRef, batches: impl IntoIterator<Item = RecordBatch>) -> Result<()> {
        let table = self.tables.get_mut(at).ok_or_else(|| missing(at))?;
        for batch in batches {
            if batch.num_rows() > 0 {
                table.batches.push(conform(&batch, &table.schema)?);
            }
        }
        Ok(())
    }

    /// The table as a DataFusion source with `schema` (a plan's view of it).
    fn source(
        &self,
        at: &TableRef,
        schema: &SchemaRef,
        row_ids: bool,
    ) -> Result<Arc<dyn datafusion::logical_expr::TableSource>> {
        let table = self.tables.get(at).ok_or_else(|| missing(at))?;
        let mut batch = table.project_to(schema)?;
        let mut schema = Arc::clone(schema);
        if row_ids {
            let ids = UInt64Array::from_iter_values(0..batch.num_rows() as u64);
            let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
            fields.push(Field::new(ROW_ID, ArrowType::UInt64, false));
            schema = Arc::new(ArrowSchema::new(fields));
            let mut columns = batch.columns().to_vec();
            columns.push(Arc::new(ids));
            batch = RecordBatch::try_new(Arc::clone(&schema), columns)?;
        }
        let provider = MemTable::try_new(schema, vec![vec![batch]])?;
        Ok(provider_as_source(Arc::new(provider)))
    }

    /// Points every scan of `plan` (and of its subqueries) at the current table contents.
    fn resolve(&self, plan: LogicalPlan) -> Result<LogicalPlan> {
        let resolved = plan.transform_up_with_subqueries(|node| {
            let LogicalPlan::TableScan(scan) = &node else {
                return Ok(Transformed::no(node));
            };
            if scan.source.downcast_ref::<LogicalTableSource>().is_none() {
                return Ok(Transformed::no(node));
            }
            let at = TableRef::new(scan.table_name.schema().unwrap_or_default(), scan.table_name.table());
            let source = self
                .source(&at, &scan.source.schema(), false)
                .map_err(|e| datafusion::error::DataFusionError::External(Box::new(e)))?;
            let scan = TableScanBuilder::new(scan.table_name.clone(), source)
                .with_projection(scan.projection.clone())
                .with_filters(scan.filters.clone())
                .with_fetch(scan.fetch)
                .build()?;
            Ok(Transformed::yes(LogicalPlan::TableScan(scan)))
        })?;
        Ok(resolved.data)
    }

    async fn collect(&self, plan: LogicalPlan) -> Result<Vec<RecordBatch>> {
        let plan = self.resolve(plan)?;
        let ctx = SessionContext::new();
        Ok(ctx.execute_logical_plan(plan).await?.collect().await?)
    }

    /// The target table scanned with row ids, aliased like the target of a DML statement.
    fn target(&self, at: &TableRef, dialect: &SqlDialect) -> Result<(LogicalPlanBuilder, SchemaRef)> {
        let table = self.tables.get(at).ok_or_else(|| missing(at))?;
        let schema = Arc::clone(&table.schema);
        let source = self.source(at, &schema, true)?;
        let b = PlanBuilder::new(dialect);
        let builder = LogicalPlanBuilder::scan(b.reference(at), source, None)?.alias(b.target_qualifier(at))?;
        Ok((builder, schema))
    }

    /// Row ids of `at` for which `predicate` holds.
    async fn matching(&self, at: &TableRef, predicate: Expr, dialect: &SqlDialect) -> Result<HashSet<u64>> {
        let (builder, _) = self.target(at, dialect)?;
        let qualifier = PlanBuilder::new(dialect).target_qualifier(at);
        let plan = builder
            .filter(predicate)?
            .project(vec![Expr::Column(datafusion::common::Column::new(
                Some(qualifier),
                ROW_ID,
            ))])?
            .build()?;
        let mut ids = HashSet::new();
        for batch in self.collect(plan).await? {
            let column = batch
                .column(0)
                .as_any()
                .downcast_ref::<UInt64Array>()
                .ok_or_else(|| Error::Unsupported {
                    message: "row ids are not UInt64".into(),
                })?;
            ids.extend(column.values().iter().copied());
        }
        Ok(ids)
    }

    /// Removes the rows whose ids are in `ids`.
    fn remove_rows(&mut self, at: &TableRef, ids: &HashSet<u64>) -> Result<()> {
        let table = self.tables.get_mut(at).ok_or_else(|| missing(at))?;
        let all = concat_batches(&table.schema, &table.batches)?;
        let keep: BooleanArray = (0..all.num_rows() as u64).map(|i| Some(!ids.contains(&i))).collect();
        table.batches = vec![filter_record_batch(&all, &keep)?];
        Ok(())
    }

    /// Runs `ops` (built with [`memory_dialect`]) in order.
    pub async fn run(&mut self, ops: &[FollowupOp]) -> Result<()> {
        let dialect = memory_dialect();
        for op in ops {
            self.run_op(op, &dialect).await?;
        }
        Ok(())
    }

    async fn run_op(&mut self, op: &FollowupOp, dialect: &SqlDialect) -> Result<()> {
        match op {
            FollowupOp::CreateTableAs { target, query } => {
                let batches = self.collect(query.clone()).await?;
                let schema = nullable(query.schema().as_arrow());
                self.create_table(target.clone(), &schema)?;
                self.append(target, batches)?;
            }
            FollowupOp::Insert { target, columns, query } => {
                let batches = self.collect(query.clone()).await?;
                let renamed = batches
                    .into_iter()
                    .map(|b| rename(&b, columns))
                    .collect::<Result<Vec<_>>>()?;
                self.append(target, renamed)?;
            }
            FollowupOp::Delete { target, predicate } => {
                let ids = self.matching(target, predicate.clone(), dialect).await?;
                self.remove_rows(target, &ids)?;
            }
            FollowupOp::DeleteLocated { target, .. } => {
                return Err(Error::Unsupported {
                    message: format!("`{}`: in-memory tables have no row locators to delete by", target.table),
                });
            }
            FollowupOp::Overwrite {
                target, columns, query, ..
            } => {
                let batches = self.collect(query.clone()).await?;
                let renamed = batches
                    .into_iter()
                    .map(|b| rename(&b, columns))
                    .collect::<Result<Vec<_>>>()?;
                self.tables
                    .get_mut(target)
                    .ok_or_else(|| missing(target))?
                    .batches
                    .clear();
                self.append(target, renamed)?;
            }
            FollowupOp::Truncate { target } => {
                self.tables
                    .get_mut(target)
                    .ok_or_else(|| missing(target))?
                    .batches
                    .clear();
            }
            FollowupOp::Update {
                target,
                assignments,
                predicate,
            } => {
                let (builder, schema) = self.target(target, dialect)?;
                let b = PlanBuilder::new(dialect);
                let qualifier = b.target_qualifier(target);
                let projection = update_projection(&b, &qualifier, &schema, assignments);
                let updated = builder.filter(predicate.clone())?.project(projection)?.build()?;
                let rows = self.collect(updated).await?;
                let ids = self.matching(target, predicate.clone(), dialect).await?;
                self.remove_rows(target, &ids)?;
                self.append(target, rows)?;
            }
            FollowupOp::Merge(merge) => self.merge(merge, dialect).await?,
            FollowupOp::DropTable { target } => {
                self.tables.remove(target);
            }
            FollowupOp::MoveTable { source, dataset, .. } => {
                let table = self.tables.remove(source).ok_or_else(|| missing(source))?;
                self.tables.insert(TableRef::new(dataset, &source.table), table);
            }
        }
        Ok(())
    }

    /// `MERGE` whose matched rows are replaced by their source row (or deleted): the matched
    /// target rows go, then the source rows that are not to be deleted come in.
    async fn merge(&mut self, merge: &MergeInto, dialect: &SqlDialect) -> Result<()> {
        let b = PlanBuilder::new(dialect);
        let target_table = self.tables.get(&merge.target).ok_or_else(|| missing(&merge.target))?;
        let target_schema = Arc::clone(&target_table.schema);
        let target_scan = {
            let source = self.source(&merge.target, &target_schema, false)?;
            LogicalPlanBuilder::scan(b.reference(&merge.target), source, None)?.alias(b.relation(TARGET_ALIAS))?
        };
        let parts = MergeParts::new(merge, &b, target_scan)?;
        let matched_ids = self.matching(&merge.target, parts.replaced, dialect).await?;
        // Evaluate both against the target as it was, before any change.
        let [matched, unmatched] = parts.inserts;
        let matched_rows = self.collect(matched).await?;
        let unmatched_rows = self.collect(unmatched).await?;
        self.remove_rows(&merge.target, &matched_ids)?;
        self.append(&merge.target, matched_rows)?;
        self.append(&merge.target, unmatched_rows)?;
        Ok(())
    }

    /// Empties `at`.
    pub fn clear(&mut self, at: &TableRef) -> Result<()> {
        self.tables.get_mut(at).ok_or_else(|| missing(at))?.batches.clear();
        Ok(())
    }

    /// Drops every table of `dataset`.
    pub fn drop_dataset(&mut self, dataset: &str) {
        self.tables.retain(|at, _| at.dataset != dataset);
    }
}

/// The rows of an `UPDATE` of a target scanned as `qualifier` names it: every column of `schema`,
/// assigned where `assignments` names it, else as it was. (The memory catalog and the lake run
/// updates as this projection over the matching rows.)
pub fn update_projection(
    b: &PlanBuilder<'_>,
    qualifier: &datafusion::common::TableReference,
    schema: &ArrowSchema,
    assignments: &[(String, Expr)],
) -> Vec<Expr> {
    schema
        .fields()
        .iter()
        .map(|f| {
            let value = assignments
                .iter()
                .find(|(c, _)| c == f.name())
                .map_or_else(|| b.col(qualifier, f.name()), |(_, v)| v.clone());
            value.alias(f.name())
        })
        .collect()
}

/// A whole-row `MERGE` as plans an executor without `MERGE` runs: the target rows it replaces or
/// deletes, and the source rows it inserts — all against the target as it was. The memory
/// catalog and the Delta lake run merges this way.
#[derive(Debug)]
pub struct MergeParts {
    /// Holds for the target rows (qualified as [`PlanBuilder::target_qualifier`] names the
    /// target) that a source row replaces or deletes.
    pub replaced: Expr,
    /// The source rows to insert, with the merge's insert columns: matched ones that changed
    /// and are not deleted, then unmatched ones the merge wants.
    pub inserts: [LogicalPlan; 2],
}

impl MergeParts {
    /// The parts of `merge`; `target_scan` is the target as it was, aliased
    /// [`TARGET_ALIAS`].
    pub fn new(merge: &MergeInto, b: &PlanBuilder<'_>, target_scan: LogicalPlanBuilder) -> Result<Self> {
        if merge.update_columns.len() != merge.insert_columns.len() {
            return Err(Error::Unsupported {
                message: format!("`{}`: berth runs merges of whole rows only", merge.target),
            });
        }
        let qualifier = b.target_qualifier(&merge.target);
        let in_source = LogicalPlanBuilder::from(merge.source.clone())
            .alias(b.relation(SOURCE_ALIAS))?
            .filter(source_matches(merge, b, &qualifier)?)?
            .project(vec![lit(1i64).alias("one")])?
            .build()?;
        let source_schema = Arc::clone(merge.source.schema());
        let mut target_key_eq: Option<Expr> = None;
        for key in &merge.on {
            let field = source_schema.field_with_unqualified_name(key)?;
            let eq = b.acol(TARGET_ALIAS, key).eq(out_ref_col(
                field.data_type().clone(),
                datafusion::common::Column::new(Some(b.relation(SOURCE_ALIAS)), key.clone()),
            ));
            target_key_eq = Some(target_key_eq.map_or(eq.clone(), |p| p.and(eq)));
        }
        let in_target = Arc::new(
            target_scan
                .clone()
                .filter(target_key_eq.clone().unwrap_or_else(|| lit(false)))?
                .project(vec![lit(1i64).alias("one")])?
                .build()?,
        );
        let source_relation = b.relation(SOURCE_ALIAS);
        let outer = |c: &str| outer_column(merge, &source_relation, c);
        let changed_target = match merge.changed(&outer, &|c| b.acol(TARGET_ALIAS, c)) {
            Some(changed) => Arc::new(
                target_scan
                    .filter(target_key_eq.unwrap_or_else(|| lit(false)).and(changed))?
                    .project(vec![lit(1i64).alias("one")])?
                    .build()?,
            ),
            None => Arc::clone(&in_target),
        };
        let source = || -> Result<LogicalPlanBuilder> {
            Ok(LogicalPlanBuilder::from(merge.source.clone()).alias(b.relation(SOURCE_ALIAS))?)
        };
        let mut matched = source()?.filter(exists(changed_target))?;
        if let Some(delete) = &merge.delete_when {
            matched = matched.filter(delete.clone().is_not_true())?;
        }
        let mut unmatched = source()?.filter(not_exists(in_target))?;
        if let Some(when) = &merge.insert_when {
            unmatched = unmatched.filter(when.clone())?;
        }
        let project = |rows: LogicalPlanBuilder| -> Result<LogicalPlan> {
            Ok(rows
                .project(
                    merge
                        .insert_columns
                        .iter()
                        .map(|c| b.acol(SOURCE_ALIAS, c).alias(c.clone()))
                        .collect::<Vec<_>>(),
                )?
                .build()?)
        };
        Ok(Self {
            replaced: exists(Arc::new(in_source)),
            inserts: [project(matched)?, project(unmatched)?],
        })
    }
}

/// The source rows (aliased `s`) that match a target row (as `qualifier` names it) and replace
/// it: with the same key, and — where the merge skips unchanged rows — marked deleted or
/// different from it.
fn source_matches(
    merge: &MergeInto,
    b: &PlanBuilder<'_>,
    qualifier: &datafusion::common::TableReference,
) -> Result<Expr> {
    let key_eq = merge
        .on
        .iter()
        .map(|key| b.acol(SOURCE_ALIAS, key).eq(outer_column(merge, qualifier, key)))
        .reduce(Expr::and)
        .ok_or_else(|| Error::Unsupported {
            message: format!("merge into `{}` has no key columns", merge.target),
        })?;
    Ok(
        match merge.changed(&|c| b.acol(SOURCE_ALIAS, c), &|c| outer_column(merge, qualifier, c)) {
            Some(changed) => key_eq.and(match &merge.delete_when {
                Some(delete) => delete.clone().or(changed),
                None => changed,
            }),
            None => key_eq,
        },
    )
}

/// A reference from a subquery to column `c` of `relation` (typed as the merge source's).
fn outer_column(merge: &MergeInto, relation: &datafusion::common::TableReference, c: &str) -> Expr {
    let data_type = merge
        .source
        .schema()
        .field_with_unqualified_name(c)
        .map(|f| f.data_type().clone())
        .unwrap_or(ArrowType::Null);
    out_ref_col(data_type, datafusion::common::Column::new(Some(relation.clone()), c))
}

/// `batch`'s columns named `columns`, in order (an insert's target columns).
pub fn rename(batch: &RecordBatch, columns: &[String]) -> Result<RecordBatch> {
    if batch.num_columns() != columns.len() {
        return Err(Error::Unsupported {
            message: format!(
                "an insert query returned {} columns for {} target columns",
                batch.num_columns(),
                columns.len()
            ),
        });
    }
    let schema = Arc::new(ArrowSchema::new(
        batch
            .schema()
            .fields()
            .iter()
            .zip(columns)
            .map(|(f, name)| Field::new(name, f.data_type().clone(), true))
            .collect::<Vec<_>>(),
    ));
    let options = arrow::array::RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
    Ok(RecordBatch::try_new_with_options(
        schema,
        batch.columns().to_vec(),
        &options,
    )?)
}

fn missing(at: &TableRef) -> Error {
    Error::Unsupported {
        message: format!("table `{at}` does not exist in the memory catalog"),
    }
}
