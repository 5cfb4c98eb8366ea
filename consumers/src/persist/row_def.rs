//! A table row defined once: [`table_row!`] takes each column's name and Rust
//! type, and derives the struct, its column list, its SQL types (from the
//! Rust types), its binds (one row in a multi-row `VALUES`, SQLite's path)
//! and its line in COPY's text format (PostgreSQL's staging table).
//! `tests/row_definitions.rs` checks the migrations against the definition.

use std::fmt::{Display, Write as _};

use sqlx::types::Json;

/// How a field goes to the database: its column's type (PostgreSQL's name,
/// as `information_schema` gives it) and the value sqlx binds for it.
pub(crate) trait ToBind {
    const SQL_TYPE: &'static str;
    type Bound;
    fn to_bind(&self) -> Self::Bound;
}

macro_rules! bind_as_itself {
    ($($ty:ty => $sql:literal),*) => {$(
        impl ToBind for $ty {
            const SQL_TYPE: &'static str = $sql;
            type Bound = $ty;
            fn to_bind(&self) -> $ty {
                self.clone()
            }
        }
    )*};
}

bind_as_itself!(
    String => "text",
    i16 => "smallint",
    i32 => "integer",
    i64 => "bigint",
    bool => "boolean",
    Option<i32> => "integer",
    Option<i64> => "bigint",
    Option<String> => "text"
);

/// Slot lists are stored as JSON arrays.
impl ToBind for Option<Vec<i32>> {
    const SQL_TYPE: &'static str = "jsonb";
    type Bound = Option<Json<Vec<i32>>>;
    fn to_bind(&self) -> Self::Bound {
        self.clone().map(Json)
    }
}

/// How a field is written in COPY's text format.
pub(crate) trait CopyText {
    fn push_copy(&self, line: &mut CopyLine<'_>);
}

macro_rules! copy_as_display {
    ($($ty:ty),*) => {$(
        impl CopyText for $ty {
            fn push_copy(&self, line: &mut CopyLine<'_>) {
                line.value(self);
            }
        }
        impl CopyText for Option<$ty> {
            fn push_copy(&self, line: &mut CopyLine<'_>) {
                match self {
                    Some(value) => line.value(value),
                    None => line.null(),
                }
            }
        }
    )*};
}

copy_as_display!(i16, i32, i64);

impl CopyText for bool {
    fn push_copy(&self, line: &mut CopyLine<'_>) {
        line.value(if *self { "t" } else { "f" });
    }
}

impl CopyText for String {
    fn push_copy(&self, line: &mut CopyLine<'_>) {
        line.text(Some(self));
    }
}

impl CopyText for Option<String> {
    fn push_copy(&self, line: &mut CopyLine<'_>) {
        line.text(self.as_deref());
    }
}

/// `[1,2,3]`: JSON with nothing COPY would read as an escape.
impl CopyText for Option<Vec<i32>> {
    fn push_copy(&self, line: &mut CopyLine<'_>) {
        match self {
            Some(ids) => line.id_list(ids),
            None => line.null(),
        }
    }
}

/// A row COPY can load: its table's columns and its line in text format.
pub(crate) trait CopyRow {
    const COLUMNS: &'static [&'static str];
    fn push_copy_line(&self, out: &mut String);
}

/// One row in COPY's text format: fields tab separated, `\N` for NULL.
pub(crate) struct CopyLine<'a> {
    out: &'a mut String,
    first: bool,
}

impl<'a> CopyLine<'a> {
    pub fn new(out: &'a mut String) -> Self {
        Self { out, first: true }
    }

    pub fn end(self) {
        self.out.push('\n');
    }

    fn separate(&mut self) {
        if !self.first {
            self.out.push('\t');
        }
        self.first = false;
    }

    /// A value whose text needs no escaping (numbers, booleans, id lists).
    fn value(&mut self, value: impl Display) {
        self.separate();
        // Straight into the line: a `to_string` would allocate per field.
        let _ = write!(self.out, "{value}");
    }

    /// `[1,2,3]`, written in place.
    fn id_list(&mut self, ids: &[i32]) {
        self.separate();
        self.out.push('[');
        for (i, id) in ids.iter().enumerate() {
            if i > 0 {
                self.out.push(',');
            }
            let _ = write!(self.out, "{id}");
        }
        self.out.push(']');
    }

    /// Free text: COPY's text format gives backslash, tab and line breaks meaning.
    fn text(&mut self, value: Option<&str>) {
        let Some(value) = value else {
            return self.null();
        };
        self.separate();
        for c in value.chars() {
            match c {
                '\\' => self.out.push_str("\\\\"),
                '\t' => self.out.push_str("\\t"),
                '\n' => self.out.push_str("\\n"),
                '\r' => self.out.push_str("\\r"),
                c => self.out.push(c),
            }
        }
    }

    fn null(&mut self) {
        self.separate();
        self.out.push_str("\\N");
    }
}

/// Defines a row struct from `field: RustType` lines and derives
/// what the write paths need from it, in the fields' order:
/// - `COLUMNS` and `SQL_TYPES` (PostgreSQL's names, as `information_schema`
///   gives them);
/// - `bind_values`: the row's binds in a multi-row `VALUES` (either backend);
/// - `push_copy_line`: the row in COPY's text format (PostgreSQL's staging
///   table and the raw COPY baseline).
macro_rules! table_row {
    (
        $(#[$meta:meta])*
        pub struct $name:ident {
            $( $(#[$field_meta:meta])* $field:ident : $ty:ty, )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Default, PartialEq)]
        pub struct $name {
            $( $(#[$field_meta])* pub $field: $ty, )*
        }

        impl $name {
            pub const COLUMNS: &'static [&'static str] = &[$(stringify!($field)),*];
            /// Read by `tests/row_definitions.rs` (for player rows).
            #[allow(dead_code)]
            pub const SQL_TYPES: &'static [&'static str] =
                &[$(<$ty as $crate::persist::row_def::ToBind>::SQL_TYPE),*];

            pub(crate) fn bind_values<'qb, 'args, DB>(
                &self,
                b: &mut sqlx::query_builder::Separated<'qb, 'args, DB, &'static str>,
            ) where
                DB: sqlx::Database,
                $( for<'q> <$ty as $crate::persist::row_def::ToBind>::Bound:
                    sqlx::Encode<'q, DB> + sqlx::Type<DB> + 'args, )*
            {
                $( b.push_bind($crate::persist::row_def::ToBind::to_bind(&self.$field)); )*
            }

            /// The row as one line of `COPY ... FROM STDIN` text format.
            pub fn push_copy_line(&self, out: &mut String) {
                let mut line = $crate::persist::row_def::CopyLine::new(out);
                $( $crate::persist::row_def::CopyText::push_copy(&self.$field, &mut line); )*
                line.end();
            }
        }

        impl $crate::persist::row_def::CopyRow for $name {
            const COLUMNS: &'static [&'static str] = $name::COLUMNS;
            fn push_copy_line(&self, out: &mut String) {
                $name::push_copy_line(self, out);
            }
        }
    };
}

pub(crate) use table_row;
