//! Type widening: when a package's column is wider than the destination's (a longer `varchar`,
//! more integer bits, a decimal with more digits, a double where a real is, more fractional
//! second digits), the migration may `ALTER` the column along a safe lattice instead of failing
//! or truncating — opt-in (`--widen-types`), since dlt never alters a column.
//!
//! Widths are compared in dlt's terms ([`Width`]: a dlt type with its precision and scale), read
//! back from the destination's catalog by [`Width::stored`]. [`widening`] decides; a
//! [`Lattice`] says which edges a destination can take; [`alter_column_type`] prints the
//! statement in the dialect's syntax ([`AlterTypeSyntax`]).
//!
//! ```text
//! bigint(8) → bigint(16) → bigint(32) → bigint(64) → decimal(p, s) with p − s ≥ the integer's digits
//! decimal(p, s) → decimal(p', s') with s' ≥ s and p' − s' ≥ p − s
//! double(24, "real") → double(53)
//! text(n) → text(m > n) → text (unbounded)          binary(n) likewise
//! timestamp(p) → timestamp(p' > p)                   time(p) likewise
//! ```

use berth_model::{Column, DataType, Table};
use datafusion::sql::sqlparser::ast::{AlterColumnOperation, AlterTableOperation, Statement};

use crate::dialect::SqlDialect;
use crate::error::Result;

/// A column's type in dlt's terms with the sizes that widening compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Width {
    /// The dlt type.
    pub data_type: DataType,
    /// Integer bits, float mantissa bits (24 real, 53 double), text or binary length, fractional
    /// second digits or decimal precision, by type; `None` is the type's largest (text) or the
    /// destination's default.
    pub precision: Option<u32>,
    /// Decimal scale.
    pub scale: Option<u32>,
}

/// What the catalog says of a column's size (`information_schema.columns`); each may be absent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CatalogSize {
    /// `numeric_precision`: bits of integers and floats on PostgreSQL and DuckDB, digits of decimals.
    pub numeric_precision: Option<u32>,
    /// `numeric_scale`.
    pub numeric_scale: Option<u32>,
    /// `character_maximum_length`.
    pub character_maximum_length: Option<u32>,
    /// `datetime_precision`.
    pub datetime_precision: Option<u32>,
}

/// Decimal digits an integer of `bits` bits needs (signed).
fn integer_digits(bits: u32) -> u32 {
    match bits {
        0..=8 => 3,
        9..=16 => 5,
        17..=32 => 10,
        33..=64 => 19,
        _ => 39,
    }
}

/// Integer bits named by a catalog type (`smallint`, DuckDB's `TINYINT`, `int4`).
fn integer_bits(db_type: &str) -> Option<u32> {
    Some(match db_type.trim().to_ascii_lowercase().as_str() {
        "tinyint" | "utinyint" | "int1" => 8,
        "smallint" | "usmallint" | "int2" => 16,
        "integer" | "int" | "uinteger" | "int4" => 32,
        "bigint" | "ubigint" | "int8" => 64,
        "hugeint" | "uhugeint" => 128,
        _ => return None,
    })
}

/// Fractional second digits named by a catalog type (DuckDB's `TIMESTAMP_S`, `_MS`, `_NS`).
fn named_second_digits(db_type: &str) -> Option<u32> {
    match db_type.trim().to_ascii_uppercase().as_str() {
        "TIMESTAMP_S" => Some(0),
        "TIMESTAMP_MS" => Some(3),
        "TIMESTAMP_NS" => Some(9),
        _ => None,
    }
}

impl Width {
    /// The width of a package column (`None` sizes are the destination's default).
    pub fn of(column: &Column) -> Option<Self> {
        Some(Self {
            data_type: column.data_type?,
            precision: column.precision,
            scale: column.scale,
        })
    }

    /// The width of an existing column of dlt type `data_type`, from its catalog type name and
    /// sizes.
    pub fn stored(data_type: DataType, db_type: &str, size: CatalogSize) -> Self {
        let precision = match data_type {
            DataType::Bigint => integer_bits(db_type).or(size.numeric_precision),
            DataType::Double => {
                let real = matches!(db_type.trim().to_ascii_lowercase().as_str(), "real" | "float4");
                size.numeric_precision.or(real.then_some(24))
            }
            DataType::Decimal => size.numeric_precision,
            DataType::Text | DataType::Binary => size.character_maximum_length,
            DataType::Timestamp | DataType::Time => named_second_digits(db_type).or(size.datetime_precision),
            _ => None,
        };
        Self {
            data_type,
            precision,
            scale: (data_type == DataType::Decimal).then_some(size.numeric_scale.unwrap_or(0)),
        }
    }
}

/// The edges of the lattice a destination can take with `ALTER`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lattice {
    /// Integers to more bits.
    pub integer_bits: bool,
    /// Integers to decimals of enough digits.
    pub integer_to_decimal: bool,
    /// Decimals to more digits with the same scale.
    pub decimal_precision: bool,
    /// Decimals to a larger scale (keeping the integer digits).
    pub decimal_scale: bool,
    /// Real to double.
    pub float_precision: bool,
    /// `varchar(n)` / `varbinary(n)` to a longer one or an unbounded one.
    pub length: bool,
    /// Timestamps and times to more fractional second digits.
    pub second_digits: bool,
    /// The most fractional second digits the destination stores (more are rounded to these,
    /// so asking for more is no change).
    pub max_second_digits: u32,
    /// Why the destination refuses the edges it does not take, for the error.
    pub refusal: &'static str,
}

impl Lattice {
    /// Every edge (PostgreSQL, DuckDB).
    pub const ALL: Self = Self {
        integer_bits: true,
        integer_to_decimal: true,
        decimal_precision: true,
        decimal_scale: true,
        float_precision: true,
        length: true,
        second_digits: true,
        max_second_digits: 9,
        refusal: "",
    };

    /// No edge, with the reason.
    pub const fn none(refusal: &'static str) -> Self {
        Self {
            integer_bits: false,
            integer_to_decimal: false,
            decimal_precision: false,
            decimal_scale: false,
            float_precision: false,
            length: false,
            second_digits: false,
            max_second_digits: 9,
            refusal,
        }
    }
}

/// How a dialect spells a column's new type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlterTypeSyntax {
    /// `ALTER TABLE t ALTER COLUMN c TYPE new` (PostgreSQL, Redshift, Databricks).
    Type,
    /// `ALTER TABLE t ALTER COLUMN c SET DATA TYPE new` (DuckDB, Snowflake, BigQuery).
    SetDataType,
    /// `ALTER TABLE t MODIFY COLUMN c new [NOT NULL]` (MySQL).
    Modify,
}

/// One kind of edge of the lattice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Edge {
    /// An integer to more bits.
    IntegerBits,
    /// An integer to a decimal of enough digits.
    IntegerToDecimal,
    /// A decimal to more digits, same scale.
    DecimalPrecision,
    /// A decimal to a larger scale, keeping its integer digits.
    DecimalScale,
    /// Real to double.
    FloatPrecision,
    /// A longer `varchar` or `varbinary`, or an unbounded one.
    Length,
    /// More fractional second digits.
    SecondDigits,
}

impl std::fmt::Display for Edge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::IntegerBits => "an integer to more bits",
            Self::IntegerToDecimal => "an integer to a decimal",
            Self::DecimalPrecision => "a decimal to more digits",
            Self::DecimalScale => "a decimal to a larger scale",
            Self::FloatPrecision => "real to double",
            Self::Length => "a longer text or binary",
            Self::SecondDigits => "more fractional second digits",
        })
    }
}

/// The lattice edge from a stored width to a wanted one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Widening {
    /// The stored column takes the wanted values as it is (same or wider, or a pair dlt loads
    /// without a change such as text and json).
    Keep,
    /// The wanted type is wider along the lattice: `ALTER` it (when widening is on and the
    /// destination takes the edge).
    Widen(Edge),
    /// Not on the lattice: the column cannot take the wanted type.
    Incompatible,
}

/// Can a column of dlt type `stored` take values of `wanted` as it is?
fn same_family(stored: DataType, wanted: DataType) -> bool {
    use DataType::*;
    stored == wanted
        || matches!(
            (stored, wanted),
            (Text, Json) | (Json, Text) | (Decimal, Wei) | (Wei, Decimal)
        )
}

/// Is `wanted` longer than `stored` (`None`: unbounded, or the destination's default `default`)?
fn longer(stored: Option<u32>, wanted: Option<u32>, default: Option<u32>) -> bool {
    match (stored.or(default), wanted.or(default)) {
        (Some(s), Some(w)) => w > s,
        (Some(_), None) => true,
        (None, _) => false,
    }
}

/// A decimal's precision and scale; dlt's default decimal is (38, 9), a precision without a
/// scale has scale 0.
fn decimal_size(width: &Width) -> (u32, u32) {
    match width.precision {
        Some(p) => (p, width.scale.unwrap_or(0)),
        None => (38, 9),
    }
}

/// The edge from `stored` to `wanted`.
pub fn widening(stored: &Width, wanted: &Width) -> Widening {
    use DataType::*;
    match (stored.data_type, wanted.data_type) {
        (Bigint, Bigint) if longer(stored.precision, wanted.precision, Some(64)) => Widening::Widen(Edge::IntegerBits),
        (Bigint, Decimal) => {
            let (p, s) = decimal_size(wanted);
            if p.saturating_sub(s) >= integer_digits(stored.precision.unwrap_or(64)) {
                Widening::Widen(Edge::IntegerToDecimal)
            } else {
                Widening::Incompatible
            }
        }
        (Decimal, Decimal) => {
            let (Some(p), Some(s)) = (stored.precision, stored.scale) else {
                return Widening::Keep;
            };
            let (wp, ws) = decimal_size(wanted);
            let (digits, wanted_digits) = (p.saturating_sub(s), wp.saturating_sub(ws));
            match (wanted_digits.cmp(&digits), ws.cmp(&s)) {
                (std::cmp::Ordering::Less, std::cmp::Ordering::Greater) => Widening::Incompatible,
                (std::cmp::Ordering::Greater, std::cmp::Ordering::Less) => Widening::Keep,
                (_, std::cmp::Ordering::Greater) => Widening::Widen(Edge::DecimalScale),
                (std::cmp::Ordering::Greater, _) => Widening::Widen(Edge::DecimalPrecision),
                _ => Widening::Keep,
            }
        }
        (Double, Double) if longer(stored.precision, wanted.precision, Some(53)) => {
            Widening::Widen(Edge::FloatPrecision)
        }
        (Text, Text) | (Binary, Binary) if longer(stored.precision, wanted.precision, None) => {
            Widening::Widen(Edge::Length)
        }
        (Timestamp, Timestamp) | (Time, Time) if longer(stored.precision, wanted.precision, Some(6)) => {
            Widening::Widen(Edge::SecondDigits)
        }
        (s, w) if same_family(s, w) => Widening::Keep,
        _ => Widening::Incompatible,
    }
}

impl Lattice {
    /// Does the destination take `edge`?
    pub fn takes(&self, edge: Edge) -> bool {
        match edge {
            Edge::IntegerBits => self.integer_bits,
            Edge::IntegerToDecimal => self.integer_to_decimal,
            Edge::DecimalPrecision => self.decimal_precision,
            Edge::DecimalScale => self.decimal_scale,
            Edge::FloatPrecision => self.float_precision,
            Edge::Length => self.length,
            Edge::SecondDigits => self.second_digits,
        }
    }
}

/// `ALTER TABLE … ALTER COLUMN c [SET DATA] TYPE …` (or `MODIFY COLUMN`) giving `column` of
/// `table` its type from the package schema.
pub fn alter_column_type(dialect: &SqlDialect, dataset: &str, table: &Table, column: &Column) -> Result<Statement> {
    let data_type = dialect.type_mapper.to_destination(column, table)?;
    let name = dialect.ident(&column.name);
    let operation = match dialect.alter_type_syntax {
        AlterTypeSyntax::Type | AlterTypeSyntax::SetDataType => AlterTableOperation::AlterColumn {
            column_name: name,
            op: AlterColumnOperation::SetDataType {
                data_type,
                using: None,
                had_set: dialect.alter_type_syntax == AlterTypeSyntax::SetDataType,
            },
        },
        AlterTypeSyntax::Modify => AlterTableOperation::ModifyColumn {
            col_name: name,
            data_type,
            // MODIFY restates the whole column: a NOT NULL column stays NOT NULL.
            options: if column.nullable {
                Vec::new()
            } else {
                vec![datafusion::sql::sqlparser::ast::ColumnOption::NotNull]
            },
            column_position: None,
        },
    };
    Ok(crate::sql::alter_table(dialect, dataset, &table.name, vec![operation]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(data_type: DataType, precision: Option<u32>, scale: Option<u32>) -> Width {
        Width {
            data_type,
            precision,
            scale,
        }
    }

    fn check(cases: &[(Width, Width, Widening)]) {
        for (stored, wanted, expected) in cases {
            assert_eq!(&widening(stored, wanted), expected, "{stored:?} → {wanted:?}");
        }
    }

    #[test]
    fn numbers_widen_along_the_lattice_and_the_rest_is_kept_or_refused() {
        use DataType::*;
        check(&[
            (
                w(Bigint, Some(16), None),
                w(Bigint, Some(32), None),
                Widening::Widen(Edge::IntegerBits),
            ),
            (
                w(Bigint, Some(32), None),
                w(Bigint, None, None),
                Widening::Widen(Edge::IntegerBits),
            ),
            (w(Bigint, Some(64), None), w(Bigint, Some(32), None), Widening::Keep),
            (
                w(Bigint, Some(64), None),
                w(Decimal, Some(19), Some(0)),
                Widening::Widen(Edge::IntegerToDecimal),
            ),
            (
                w(Bigint, Some(64), None),
                w(Decimal, Some(20), Some(2)),
                Widening::Incompatible,
            ),
            (
                w(Bigint, Some(32), None),
                w(Decimal, Some(12), Some(2)),
                Widening::Widen(Edge::IntegerToDecimal),
            ),
            (
                w(Decimal, Some(10), Some(2)),
                w(Decimal, Some(12), Some(2)),
                Widening::Widen(Edge::DecimalPrecision),
            ),
            (
                w(Decimal, Some(10), Some(2)),
                w(Decimal, Some(12), Some(4)),
                Widening::Widen(Edge::DecimalScale),
            ),
            (
                w(Decimal, Some(10), Some(2)),
                w(Decimal, Some(10), Some(4)),
                Widening::Incompatible,
            ),
            (
                w(Decimal, Some(10), Some(2)),
                w(Decimal, Some(8), Some(2)),
                Widening::Keep,
            ),
            (w(Decimal, Some(38), Some(9)), w(Decimal, None, None), Widening::Keep),
            (
                w(Double, Some(24), None),
                w(Double, None, None),
                Widening::Widen(Edge::FloatPrecision),
            ),
            (w(Double, Some(53), None), w(Double, None, None), Widening::Keep),
        ]);
    }

    #[test]
    fn text_binary_and_times_widen_along_the_lattice_and_the_rest_is_kept_or_refused() {
        use DataType::*;
        check(&[
            (
                w(Text, Some(10), None),
                w(Text, Some(20), None),
                Widening::Widen(Edge::Length),
            ),
            (
                w(Text, Some(10), None),
                w(Text, None, None),
                Widening::Widen(Edge::Length),
            ),
            (w(Text, None, None), w(Text, Some(20), None), Widening::Keep),
            (w(Text, Some(20), None), w(Json, None, None), Widening::Keep),
            (
                w(Binary, Some(4), None),
                w(Binary, None, None),
                Widening::Widen(Edge::Length),
            ),
            (
                w(Timestamp, Some(3), None),
                w(Timestamp, Some(6), None),
                Widening::Widen(Edge::SecondDigits),
            ),
            (
                w(Timestamp, Some(3), None),
                w(Timestamp, None, None),
                Widening::Widen(Edge::SecondDigits),
            ),
            (
                w(Timestamp, Some(6), None),
                w(Timestamp, Some(9), None),
                Widening::Widen(Edge::SecondDigits),
            ),
            (
                w(Time, Some(0), None),
                w(Time, Some(3), None),
                Widening::Widen(Edge::SecondDigits),
            ),
            (w(Text, None, None), w(Bigint, None, None), Widening::Incompatible),
            (
                w(Double, Some(53), None),
                w(Decimal, Some(10), Some(2)),
                Widening::Incompatible,
            ),
            (w(Bigint, Some(64), None), w(Double, None, None), Widening::Incompatible),
            (w(Timestamp, Some(6), None), w(Date, None, None), Widening::Incompatible),
        ]);
    }

    #[test]
    fn stored_widths_come_from_type_names_and_catalog_sizes() {
        let size = CatalogSize {
            numeric_precision: Some(32),
            ..CatalogSize::default()
        };
        assert_eq!(Width::stored(DataType::Bigint, "SMALLINT", size).precision, Some(16));
        assert_eq!(Width::stored(DataType::Bigint, "integer", size).precision, Some(32));
        assert_eq!(
            Width::stored(DataType::Double, "real", CatalogSize::default()).precision,
            Some(24)
        );
        assert_eq!(
            Width::stored(DataType::Timestamp, "TIMESTAMP_MS", CatalogSize::default()).precision,
            Some(3)
        );
        let text = CatalogSize {
            character_maximum_length: Some(12),
            ..CatalogSize::default()
        };
        assert_eq!(
            Width::stored(DataType::Text, "character varying", text).precision,
            Some(12)
        );
    }
}
