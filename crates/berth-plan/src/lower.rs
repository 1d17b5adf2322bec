//! Lowers [`FollowupOp`]s to a dialect's statements: sqlparser ASTs around the SELECT bodies and
//! predicates that DataFusion's unparser prints from the plans. Nothing is glued from strings;
//! every identifier and literal is escaped by the printer.

use std::sync::Arc;

use datafusion::logical_expr::expr_fn::{exists, out_ref_col};
use datafusion::logical_expr::{Expr as DfExpr, LogicalPlan, LogicalPlanBuilder, lit};
use datafusion::sql::sqlparser::ast::{
    Assignment, AssignmentTarget, Expr, FromTable, FunctionArguments, MergeAction, MergeClauseKind, MergeInsertKind,
    ObjectName, Query, SelectInto, SetExpr, Statement, TableAlias, TableFactor,
};
use datafusion::sql::unparser::Unparser;

use crate::dialect::{OverwriteStyle, SqlDialect};
use crate::error::{Error, Result};
use crate::followup::{FollowupOp, LOCATOR, MergeInto, PlanBuilder, SOURCE_ALIAS, TARGET_ALIAS, TableRef};
use crate::sql::{self, skeleton};
use crate::statement::SqlStatement;

/// Lowers `ops` to `dialect`'s statements, in order.
pub fn lower(dialect: &SqlDialect, ops: &[FollowupOp]) -> Result<Vec<SqlStatement>> {
    let lowering = Lowering {
        dialect,
        unparser: Unparser::new(dialect.unparser.as_ref()),
        plans: PlanBuilder::new(dialect),
    };
    let mut statements = Vec::new();
    for op in ops {
        lowering.lower(op, &mut statements)?;
    }
    Ok(statements)
}

struct Lowering<'a> {
    dialect: &'a SqlDialect,
    unparser: Unparser<'a>,
    plans: PlanBuilder<'a>,
}

impl Lowering<'_> {
    fn name(&self, table: &TableRef) -> ObjectName {
        self.dialect.table_name(&table.dataset, &table.table)
    }

    fn query(&self, plan: &LogicalPlan) -> Result<Query> {
        match self.unparser.plan_to_sql(plan)? {
            Statement::Query(query) => Ok(*query),
            other => Err(Error::Unsupported {
                message: format!("the unparser printed a non-query statement: {other}"),
            }),
        }
    }

    fn expr(&self, expr: &DfExpr) -> Result<Expr> {
        Ok(self.unparser.expr_to_sql(expr)?)
    }

    fn target_alias(&self) -> Option<TableAlias> {
        self.dialect.dml_target_alias.then(|| TableAlias {
            explicit: true,
            at: None,
            name: self.dialect.ident(TARGET_ALIAS),
            columns: Vec::new(),
        })
    }

    fn lower(&self, op: &FollowupOp, out: &mut Vec<SqlStatement>) -> Result<()> {
        match op {
            FollowupOp::CreateTableAs { target, query } => {
                let query = self.query(query)?;
                out.push(self.create_table_as(target, query).into());
            }
            FollowupOp::Insert { target, columns, query } => {
                let columns: Vec<&str> = columns.iter().map(String::as_str).collect();
                let query = self.query(query)?;
                out.push(sql::insert_select(self.dialect, &target.dataset, &target.table, &columns, query).into());
            }
            FollowupOp::Delete { target, predicate } => {
                out.push(self.delete(target, predicate)?.into());
            }
            FollowupOp::DeleteLocated { target, rows } => {
                out.push(self.delete_located(target, rows)?.into());
            }
            FollowupOp::Truncate { target } => {
                out.push(sql::delete_all(self.dialect, &target.dataset, &target.table).into());
            }
            FollowupOp::Overwrite {
                target,
                source,
                columns,
                query,
            } => self.overwrite(target, source, columns, query, out)?,
            FollowupOp::Update {
                target,
                assignments,
                predicate,
            } => out.push(self.update(target, assignments, predicate)?.into()),
            FollowupOp::Merge(merge) => {
                if self.dialect.supports_merge {
                    out.push(self.merge(merge)?.into());
                } else {
                    self.merge_as_delete_insert(merge, out)?;
                }
            }
            FollowupOp::DropTable { target } => {
                out.push(sql::drop_table(self.dialect, &target.dataset, &target.table).into());
            }
            FollowupOp::MoveTable {
                source,
                dataset,
                unique_columns,
            } => {
                if !self.dialect.supports_set_schema {
                    return Err(Error::Unsupported {
                        message: format!("{} cannot move a table between datasets", self.dialect.name),
                    });
                }
                if self.dialect.unlogged_staging {
                    // Nothing to do for a staging table that was logged from the start.
                    out.push(SqlStatement::SetLogged {
                        table: self.name(source),
                        logged: true,
                    });
                }
                out.push(sql::drop_table(self.dialect, dataset, &source.table).into());
                out.push(SqlStatement::SetSchema {
                    table: self.name(source),
                    schema: self.dialect.ident(dataset),
                });
                if self.dialect.create_unique_constraints {
                    let moved = TableRef::new(dataset, &source.table);
                    for column in unique_columns {
                        out.push(SqlStatement::AddUnique {
                            table: self.name(&moved),
                            column: self.dialect.ident(column),
                        });
                    }
                }
            }
        }
        Ok(())
    }

    fn overwrite(
        &self,
        target: &TableRef,
        source: &TableRef,
        columns: &[String],
        query: &LogicalPlan,
        out: &mut Vec<SqlStatement>,
    ) -> Result<()> {
        let columns: Vec<&str> = columns.iter().map(String::as_str).collect();
        match self.dialect.overwrite {
            OverwriteStyle::EmptyThenInsert => {
                out.push(sql::delete_all(self.dialect, &target.dataset, &target.table).into());
                let query = self.query(query)?;
                out.push(sql::insert_select(self.dialect, &target.dataset, &target.table, &columns, query).into());
            }
            OverwriteStyle::InsertOverwrite => {
                let query = self.query(query)?;
                let mut statement = sql::insert_select(self.dialect, &target.dataset, &target.table, &columns, query);
                if let Statement::Insert(insert) = &mut statement {
                    insert.overwrite = true;
                    insert.into = false;
                    insert.has_table_keyword = true;
                }
                out.push(statement.into());
            }
            OverwriteStyle::CloneCopyGrants => {
                let mut statement = skeleton("CREATE OR REPLACE TABLE t (c INT)");
                if let Statement::CreateTable(create) = &mut statement {
                    create.columns.clear();
                    create.name = self.name(target);
                    create.clone = Some(self.name(source));
                    create.or_replace = true;
                    create.copy_grants = true;
                }
                out.push(statement.into());
            }
        }
        Ok(())
    }

    fn create_table_as(&self, target: &TableRef, mut query: Query) -> Statement {
        if self.dialect.unlogged_staging
            && let SetExpr::Select(select) = query.body.as_mut()
        {
            // `SELECT … INTO UNLOGGED TABLE target FROM …`: a work table lives only inside its
            // follow-up's transaction, so nothing of it needs the write-ahead log (PostgreSQL,
            // 250k row locators of a 500k upsert into 5M rows: 16 MB of WAL less, about a
            // sixth of the merge's; as fast within the runs' noise). The server may still scan
            // in parallel for it, as for `CREATE TABLE AS`.
            select.into = Some(SelectInto {
                temporary: false,
                unlogged: true,
                table: true,
                name: self.name(target),
            });
            return Statement::Query(Box::new(query));
        }
        if self.dialect.create_table_as {
            let mut statement = skeleton("CREATE TABLE t AS SELECT 1");
            if let Statement::CreateTable(create) = &mut statement {
                create.name = self.name(target);
                create.query = Some(Box::new(query));
            }
            statement
        } else {
            // `SELECT … INTO target FROM …` (MSSQL).
            if let SetExpr::Select(select) = query.body.as_mut() {
                select.into = Some(SelectInto {
                    temporary: false,
                    unlogged: false,
                    table: false,
                    name: self.name(target),
                });
            }
            Statement::Query(Box::new(query))
        }
    }

    fn delete(&self, target: &TableRef, predicate: &DfExpr) -> Result<Statement> {
        let mut statement = skeleton("DELETE FROM t AS d WHERE 1 = 1");
        if let Statement::Delete(delete) = &mut statement {
            let (FromTable::WithFromKeyword(tables) | FromTable::WithoutKeyword(tables)) = &mut delete.from;
            for t in tables {
                if let TableFactor::Table { name, alias, .. } = &mut t.relation {
                    *name = self.name(target);
                    *alias = self.target_alias();
                }
            }
            delete.selection = Some(self.expr(predicate)?);
        }
        Ok(statement)
    }

    /// `DELETE FROM target WHERE <locator> = ANY(ARRAY(SELECT "_berth_row" FROM rows))`: the
    /// array form makes PostgreSQL look each row up by its `ctid` (a `Tid Scan`); as a join it
    /// would scan the whole table.
    fn delete_located(&self, target: &TableRef, rows: &TableRef) -> Result<Statement> {
        let Some(locator) = self.dialect.row_locator else {
            return Err(Error::Unsupported {
                message: format!("{} has no row locator to delete rows by", self.dialect.name),
            });
        };
        let work = berth_model::Table::new(
            rows.table.clone(),
            [berth_model::Column::new(LOCATOR, berth_model::DataType::Text)],
        );
        let listed = self
            .plans
            .scan(rows, &work, None)?
            .project(vec![self.plans.bare(LOCATOR)])?
            .build()?;
        let mut statement = skeleton("DELETE FROM t AS d WHERE ctid = ANY(ARRAY(SELECT r FROM w))");
        if let Statement::Delete(delete) = &mut statement {
            let (FromTable::WithFromKeyword(tables) | FromTable::WithoutKeyword(tables)) = &mut delete.from;
            for t in tables {
                if let TableFactor::Table { name, alias, .. } = &mut t.relation {
                    *name = self.name(target);
                    *alias = self.target_alias();
                }
            }
            if let Some(Expr::AnyOp { left, right, .. }) = &mut delete.selection
                && let Expr::Function(array) = right.as_mut()
                && let FunctionArguments::Subquery(query) = &mut array.args
            {
                **left = Expr::Identifier(self.dialect.ident(locator));
                **query = self.query(&listed)?;
                return Ok(statement);
            }
        }
        Err(Error::Unsupported {
            message: "the skeleton of a delete by row locator did not parse as `ctid = ANY(ARRAY(…))`".into(),
        })
    }

    fn update(&self, target: &TableRef, assignments: &[(String, DfExpr)], predicate: &DfExpr) -> Result<Statement> {
        let mut statement = skeleton("UPDATE t AS d SET c = 1 WHERE 1 = 1");
        if let Statement::Update(update) = &mut statement {
            if let TableFactor::Table { name, alias, .. } = &mut update.table.relation {
                *name = self.name(target);
                *alias = self.target_alias();
            }
            update.assignments = assignments
                .iter()
                .map(|(column, value)| {
                    Ok(Assignment {
                        target: AssignmentTarget::ColumnName(ObjectName::from(vec![self.dialect.ident(column)])),
                        value: self.expr(value)?,
                    })
                })
                .collect::<Result<_>>()?;
            update.selection = Some(self.expr(predicate)?);
        }
        Ok(statement)
    }

    fn key_match(&self, merge: &MergeInto) -> DfExpr {
        let keys = merge
            .on
            .iter()
            .map(|k| self.plans.acol(TARGET_ALIAS, k).eq(self.plans.acol(SOURCE_ALIAS, k)))
            .reduce(DfExpr::and)
            .unwrap_or_else(|| lit(false));
        match &merge.target_range {
            Some(range) => keys.and(range.predicate(&self.plans, &self.plans.relation(TARGET_ALIAS))),
            None => keys,
        }
    }

    fn merge(&self, merge: &MergeInto) -> Result<Statement> {
        let mut statement = skeleton(
            "MERGE INTO t AS d USING (SELECT 1) AS s ON 1 = 1 \
             WHEN MATCHED AND 1 = 1 THEN DELETE \
             WHEN MATCHED THEN UPDATE SET c = 1 \
             WHEN NOT MATCHED AND 1 = 1 THEN INSERT (c) VALUES (1)",
        );
        let Statement::Merge(ast) = &mut statement else {
            unreachable!("the MERGE skeleton parses as MERGE");
        };
        if let TableFactor::Table { name, alias, .. } = &mut ast.table {
            *name = self.name(&merge.target);
            if let Some(alias) = alias {
                alias.name = self.dialect.ident(TARGET_ALIAS);
            }
        }
        if let TableFactor::Derived { subquery, alias, .. } = &mut ast.source {
            **subquery = self.query(&merge.source)?;
            if let Some(alias) = alias {
                alias.name = self.dialect.ident(SOURCE_ALIAS);
            }
        }
        *ast.on = self.expr(&self.key_match(merge))?;
        let source_value = |c: &str| self.expr(&self.plans.acol(SOURCE_ALIAS, c));
        let mut clauses = Vec::new();
        for mut clause in std::mem::take(&mut ast.clauses) {
            match (&clause.clause_kind, &mut clause.action) {
                (MergeClauseKind::Matched, MergeAction::Delete { .. }) => {
                    let Some(when) = &merge.delete_when else { continue };
                    clause.predicate = Some(self.expr(when)?);
                }
                (MergeClauseKind::Matched, MergeAction::Update(update)) => {
                    if merge.update_columns.is_empty() {
                        continue;
                    }
                    let changed = merge.changed(&|c| self.plans.acol(SOURCE_ALIAS, c), &|c| {
                        self.plans.acol(TARGET_ALIAS, c)
                    });
                    clause.predicate = changed.as_ref().map(|c| self.expr(c)).transpose()?;
                    update.assignments = merge
                        .update_columns
                        .iter()
                        .map(|c| {
                            Ok(Assignment {
                                target: AssignmentTarget::ColumnName(ObjectName::from(vec![self.dialect.ident(c)])),
                                value: source_value(c)?,
                            })
                        })
                        .collect::<Result<_>>()?;
                }
                (_, MergeAction::Insert(insert)) => {
                    clause.predicate = merge.insert_when.as_ref().map(|w| self.expr(w)).transpose()?;
                    insert.columns = merge
                        .insert_columns
                        .iter()
                        .map(|c| ObjectName::from(vec![self.dialect.ident(c)]))
                        .collect();
                    if let MergeInsertKind::Values(values) = &mut insert.kind {
                        values.rows = vec![datafusion::sql::sqlparser::ast::Parens::with_empty_span(
                            merge
                                .insert_columns
                                .iter()
                                .map(|c| source_value(c))
                                .collect::<Result<Vec<_>>>()?,
                        )];
                    }
                }
                _ => {}
            }
            clauses.push(clause);
        }
        ast.clauses = clauses;
        Ok(statement)
    }

    /// Without `MERGE`: delete the matched rows, then insert every source row that is not to be
    /// deleted. The same result, as both run in one transaction.
    fn merge_as_delete_insert(&self, merge: &MergeInto, out: &mut Vec<SqlStatement>) -> Result<()> {
        let target = self.plans.target_qualifier(&merge.target);
        let schema = merge.source.schema();
        // Outer references from a subquery to the columns of `relation`.
        let outer = |relation: &datafusion::common::TableReference, c: &str| -> Result<DfExpr> {
            let name = self.dialect.stored_name(c);
            let field = schema.field_with_unqualified_name(&name)?;
            Ok(out_ref_col(
                field.data_type().clone(),
                datafusion::common::Column::new(Some(relation.clone()), name),
            ))
        };
        let mut predicate: Option<DfExpr> = None;
        for key in &merge.on {
            let eq = self.plans.acol(SOURCE_ALIAS, key).eq(outer(&target, key)?);
            predicate = Some(match predicate {
                Some(p) => p.and(eq),
                None => eq,
            });
        }
        let mut predicate = predicate.ok_or_else(|| Error::Unsupported {
            message: format!("merge into `{}` has no key columns", merge.target),
        })?;
        // Skipping unchanged rows: only rows to delete or that changed are replaced.
        let changed_columns = merge.changed_columns.clone().unwrap_or_default();
        let outer_target: Vec<(String, DfExpr)> = changed_columns
            .iter()
            .map(|c| Ok((c.clone(), outer(&target, c)?)))
            .collect::<Result<_>>()?;
        let target_value = |c: &str| {
            outer_target
                .iter()
                .find(|(name, _)| name == c)
                .map_or_else(|| lit(false), |(_, e)| e.clone())
        };
        if let Some(changed) = merge.changed(&|c| self.plans.acol(SOURCE_ALIAS, c), &target_value) {
            predicate = predicate.and(match &merge.delete_when {
                Some(delete) => delete.clone().or(changed),
                None => changed,
            });
        }
        let matched = LogicalPlanBuilder::from(merge.source.clone())
            .alias(self.plans.relation(SOURCE_ALIAS))?
            .filter(predicate)?
            .project(vec![lit(1i64).alias("one")])?
            .build()?;
        let matched = exists(Arc::new(matched));
        let predicate = match &merge.target_range {
            Some(range) => range.predicate(&self.plans, &target).and(matched),
            None => matched,
        };
        out.push(self.delete(&merge.target, &predicate)?.into());
        let mut rows = LogicalPlanBuilder::from(merge.source.clone()).alias(self.plans.relation(SOURCE_ALIAS))?;
        if let Some(when) = &merge.insert_when {
            rows = rows.filter(when.clone())?;
        }
        if merge.changed_columns.is_some() {
            // The unchanged matched rows stayed: their source rows are not inserted again.
            let source = self.plans.relation(SOURCE_ALIAS);
            let mut still_there: Option<DfExpr> = None;
            for key in &merge.on {
                let eq = self.plans.acol(TARGET_ALIAS, key).eq(outer(&source, key)?);
                still_there = Some(still_there.map_or(eq.clone(), |p| p.and(eq)));
            }
            let arrow = Arc::new(schema.as_arrow().clone());
            let table = Arc::new(datafusion::logical_expr::builder::LogicalTableSource::new(arrow));
            let existing = LogicalPlanBuilder::scan(self.plans.reference(&merge.target), table, None)?
                .alias(self.plans.relation(TARGET_ALIAS))?
                .filter(still_there.unwrap_or_else(|| lit(false)))?
                .project(vec![lit(1i64).alias("one")])?
                .build()?;
            rows = rows.filter(datafusion::logical_expr::expr_fn::not_exists(Arc::new(existing)))?;
        }
        let rows = rows
            .project(
                merge
                    .insert_columns
                    .iter()
                    .map(|c| self.plans.acol(SOURCE_ALIAS, c).alias(self.dialect.stored_name(c)))
                    .collect::<Vec<_>>(),
            )?
            .build()?;
        let columns: Vec<&str> = merge.insert_columns.iter().map(String::as_str).collect();
        out.push(
            sql::insert_select(
                self.dialect,
                &merge.target.dataset,
                &merge.target.table,
                &columns,
                self.query(&rows)?,
            )
            .into(),
        );
        Ok(())
    }
}
