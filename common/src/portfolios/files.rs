//! Portfolio files: reading the transactions of a CSV or Ghostfolio JSON file, with every
//! problem reported by line and field, and writing a portfolio's transactions back in either
//! format, so that an export imports again unchanged.
//!
//! The CSV format (README, "Importing and exporting"): a header row naming the columns, in any
//! order, `executed_at`, `coin_id`, `side`, `quantity` required, `price`, `fee`, `note`,
//! `currency` optional; one transaction per row. Ghostfolio's format is its JSON export:
//! `{"activities": [{"type", "symbol", "quantity", "unitPrice", "fee", "currency", "date",
//! "dataSource", "comment"}]}`, with COINGECKO symbols (coin ids).
//!
//! Amounts are read exactly from the file's text (a JSON number is never a float here).

use std::collections::BTreeMap;
use std::str::FromStr;

use chrono::{DateTime, NaiveDate, SubsecRound, Utc};
use rust_decimal::Decimal;
use serde_json::value::RawValue;

use super::Side;
use super::jobs::{FileFormat, RowError};
use super::rules::{self, Draft, ValidTransaction};

/// Most transactions one file may hold.
pub const MAX_ROWS: usize = 100_000;
/// Most problems a result lists (all are counted).
pub const MAX_ERRORS: usize = 1_000;

/// The columns of a CSV file, in the order an export writes them.
pub const CSV_COLUMNS: [&str; 8] = [
    "executed_at",
    "coin_id",
    "side",
    "quantity",
    "price",
    "fee",
    "currency",
    "note",
];
const CSV_REQUIRED: [&str; 4] = ["executed_at", "coin_id", "side", "quantity"];

/// What a date must look like.
const DATE_WORDS: &str = "must be a date and time in RFC 3339 format, such as 2026-11-21T09:30:00Z, or a date such as 2026-11-21";

/// A valid transaction of a file, with the line it is on.
#[derive(Debug, Clone, PartialEq)]
pub struct FileRow {
    /// The line the transaction starts on.
    pub line: u64,
    /// The transaction.
    pub transaction: ValidTransaction,
}

/// What a file holds: its valid rows, and every problem found.
#[derive(Debug, Default)]
pub struct ReadFile {
    /// Rows valid in themselves (coin existence and the ledger are checked later).
    pub rows: Vec<FileRow>,
    /// Transactions in the file, valid or not.
    pub total: u64,
    /// The problems, in line order (at most [`MAX_ERRORS`]).
    pub errors: Vec<RowError>,
    /// How many problems there are.
    pub errors_total: u64,
}

impl ReadFile {
    /// Records a problem (keeping at most [`MAX_ERRORS`]).
    pub fn problem(&mut self, line: u64, field: &str, message: impl Into<String>) {
        self.errors_total += 1;
        if self.errors.len() < MAX_ERRORS {
            self.errors.push(RowError {
                line,
                field: field.to_owned(),
                message: message.into(),
            });
        }
    }
}

/// Reads the transactions of `content` in `format` for a portfolio quoted in `base_currency`;
/// `now` bounds the future.
pub fn read(
    format: FileFormat,
    content: &[u8],
    base_currency: &str,
    now: DateTime<Utc>,
) -> ReadFile {
    let mut file = ReadFile::default();
    let text = match std::str::from_utf8(content) {
        Ok(text) => text.strip_prefix('\u{feff}').unwrap_or(text),
        Err(err) => {
            let line = line_of_offset(&content[..err.valid_up_to()]);
            file.problem(line, "file", "is not UTF-8 text");
            return file;
        }
    };
    if text.contains('\0') {
        let before = text.split('\0').next().unwrap_or_default();
        file.problem(
            line_of_offset(before.as_bytes()),
            "file",
            "contains a NUL character",
        );
        return file;
    }
    match format {
        FileFormat::Csv => read_csv(text, base_currency, now, &mut file),
        FileFormat::Json => read_ghostfolio(text, base_currency, now, &mut file),
    }
    file
}

/// The 1-based line of the byte just after `before`.
fn line_of_offset(before: &[u8]) -> u64 {
    before.iter().filter(|b| **b == b'\n').count() as u64 + 1
}

/// One transaction's fields as text, before any rule.
#[derive(Debug, Default)]
struct Fields<'a> {
    executed_at: Option<&'a str>,
    coin_id: Option<&'a str>,
    side: Option<&'a str>,
    quantity: Option<&'a str>,
    price: Option<&'a str>,
    fee: Option<&'a str>,
    currency: Option<&'a str>,
    note: Option<&'a str>,
}

/// How a format names each field in its problems.
struct Names {
    executed_at: &'static str,
    coin_id: &'static str,
    side: &'static str,
    quantity: &'static str,
    price: &'static str,
    fee: &'static str,
    currency: &'static str,
    note: &'static str,
}

impl Names {
    /// The format's name of a field as [`rules`] names it.
    fn of(&self, rule_field: &str) -> &'static str {
        match rule_field {
            "executed_at" => self.executed_at,
            "coin_id" => self.coin_id,
            "side" => self.side,
            "quantity" => self.quantity,
            "price" => self.price,
            "fee" => self.fee,
            "note" => self.note,
            _ => "file",
        }
    }
}

const CSV_NAMES: Names = Names {
    executed_at: "executed_at",
    coin_id: "coin_id",
    side: "side",
    quantity: "quantity",
    price: "price",
    fee: "fee",
    currency: "currency",
    note: "note",
};

const GHOSTFOLIO_NAMES: Names = Names {
    executed_at: "date",
    coin_id: "symbol",
    side: "type",
    quantity: "quantity",
    price: "unitPrice",
    fee: "fee",
    currency: "currency",
    note: "comment",
};

/// Checks one transaction's fields and keeps it or its problems.
fn accept(
    line: u64,
    fields: &Fields<'_>,
    side: Option<Side>,
    names: &Names,
    base_currency: &str,
    now: DateTime<Utc>,
    file: &mut ReadFile,
) {
    let errors_before = file.errors_total;
    let mut required = |value: Option<&str>, name: &str| -> Option<String> {
        match value.map(str::trim).filter(|value| !value.is_empty()) {
            Some(value) => Some(value.to_owned()),
            None => {
                file.problem(line, name, "is required");
                None
            }
        }
    };
    let coin_id = required(fields.coin_id, names.coin_id);
    let quantity_text = required(fields.quantity, names.quantity);
    let executed_text = required(fields.executed_at, names.executed_at);
    let mut amount = |value: Option<&str>, name: &str| -> Option<Decimal> {
        let text = value.map(str::trim).filter(|value| !value.is_empty())?;
        match parse_decimal(text) {
            Some(amount) => Some(amount),
            None => {
                file.problem(
                    line,
                    name,
                    format!("{text:?} is not a decimal number such as 0.25"),
                );
                None
            }
        }
    };
    let quantity = amount(quantity_text.as_deref(), names.quantity);
    let price = amount(fields.price, names.price);
    let fee = amount(fields.fee, names.fee);
    let executed_at = executed_text
        .as_deref()
        .and_then(|text| match parse_time(text) {
            Some(at) => Some(at),
            None => {
                file.problem(line, names.executed_at, DATE_WORDS);
                None
            }
        });
    if let Some(currency) = fields.currency.map(str::trim).filter(|c| !c.is_empty())
        && !currency.eq_ignore_ascii_case(base_currency)
    {
        file.problem(
            line,
            names.currency,
            format!(
                "is {currency} but the portfolio's amounts are in {}",
                base_currency.to_uppercase()
            ),
        );
    }
    if file.errors_total > errors_before {
        return;
    }
    let (Some(coin_id), Some(side), Some(quantity), Some(executed_at)) =
        (coin_id, side, quantity, executed_at)
    else {
        return;
    };
    let draft = Draft {
        coin_id: &coin_id,
        side,
        quantity,
        price,
        fee,
        // Postgres keeps microseconds: compare and store what it will hold.
        executed_at: Some(executed_at.trunc_subsecs(6)),
        note: fields.note,
    };
    match rules::validate(&draft, now) {
        Ok(transaction) => file.rows.push(FileRow { line, transaction }),
        Err(problems) => {
            for problem in problems {
                file.problem(line, names.of(problem.field), problem.message);
            }
        }
    }
}

/// A decimal as written in a file: plain (`0.25`, `-1`) or with an exponent (`1e-8`).
fn parse_decimal(text: &str) -> Option<Decimal> {
    if text.contains(['e', 'E']) {
        Decimal::from_scientific(text).ok()
    } else {
        Decimal::from_str_exact(text).ok()
    }
    .map(|value| value.normalize())
}

/// An RFC 3339 time, or a date (its midnight, UTC).
fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .map(|at| at.with_timezone(&Utc))
        .ok()
        .or_else(|| {
            NaiveDate::from_str(text)
                .ok()
                .and_then(|day| day.and_hms_opt(0, 0, 0))
                .map(|midnight| midnight.and_utc())
        })
}

fn csv_side(text: Option<&str>, line: u64, file: &mut ReadFile) -> Option<Side> {
    let text = text.map(str::trim).filter(|text| !text.is_empty());
    let Some(text) = text else {
        file.problem(line, "side", "is required");
        return None;
    };
    let side = Side::from_db(&text.to_ascii_lowercase());
    if side.is_none() {
        file.problem(
            line,
            "side",
            format!("{text:?} is not one of: buy, sell, transfer_in, transfer_out"),
        );
    }
    side
}

/// The columns a CSV header names, by position; problems with it are recorded in `file`.
fn read_header(
    reader: &mut csv::Reader<&[u8]>,
    file: &mut ReadFile,
) -> Option<(BTreeMap<&'static str, usize>, usize)> {
    let header = match reader.headers() {
        Ok(header) => header.clone(),
        Err(err) => {
            file.problem(1, "file", format!("has no readable header row: {err}"));
            return None;
        }
    };
    if let (1, Some(only)) = (header.len(), header.get(0))
        && let Some(separator) = [';', '\t', '|'].into_iter().find(|c| only.contains(*c))
    {
        file.problem(
            1,
            "file",
            format!("columns must be separated by commas (this header uses {separator:?})"),
        );
        return None;
    }
    let mut columns: BTreeMap<&'static str, usize> = BTreeMap::new();
    for (index, name) in header.iter().enumerate() {
        let name = name.trim();
        match CSV_COLUMNS
            .iter()
            .find(|known| known.eq_ignore_ascii_case(name))
        {
            Some(known) if columns.insert(known, index).is_some() => {
                file.problem(1, known, "is a column named twice");
            }
            Some(_) => {}
            None => file.problem(
                1,
                "file",
                format!(
                    "the header names {name:?}, which is not a column (the columns are: {})",
                    CSV_COLUMNS.join(", ")
                ),
            ),
        }
    }
    for required in CSV_REQUIRED {
        if !columns.contains_key(required) {
            file.problem(1, required, "is a required column missing from the header");
        }
    }
    (file.errors_total == 0).then_some((columns, header.len()))
}

fn csv_reader(text: &str) -> csv::Reader<&[u8]> {
    csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .from_reader(text.as_bytes())
}

/// The problems of a CSV file's header row alone (what can be told before reading the rows).
pub fn csv_header_problems(text: &str) -> Vec<RowError> {
    let mut file = ReadFile::default();
    read_header(
        &mut csv_reader(text.trim_start_matches('\u{feff}')),
        &mut file,
    );
    file.errors
}

fn read_csv(text: &str, base_currency: &str, now: DateTime<Utc>, file: &mut ReadFile) {
    let mut reader = csv_reader(text);
    let Some((columns, header_len)) = read_header(&mut reader, file) else {
        return;
    };
    // Lines counted from each record's byte offset: the reader's own line numbers miss blank
    // lines and line breaks inside quotes, and its offset of a record after blank lines is
    // where those begin.
    let mut lines = LineCounter::new(text);
    let mut record = csv::StringRecord::new();
    loop {
        let offset = reader.position().byte();
        match reader.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(err) => {
                let offset = err.position().map_or(offset, csv::Position::byte);
                let line = lines.line_at(offset as usize);
                file.problem(line, "file", format!("cannot be read as CSV here: {err}"));
                return;
            }
        }
        let mut offset = record.position().map_or(offset, csv::Position::byte) as usize;
        while matches!(text.as_bytes().get(offset), Some(b'\r' | b'\n')) {
            offset += 1;
        }
        let line = lines.line_at(offset);
        if record.iter().all(|field| field.trim().is_empty()) {
            continue; // A blank line, e.g. at the end of the file.
        }
        file.total += 1;
        if file.total > MAX_ROWS as u64 {
            file.problem(
                line,
                "file",
                format!("has more than {MAX_ROWS} transactions"),
            );
            return;
        }
        if record.len() != header_len {
            file.problem(
                line,
                "file",
                format!(
                    "has {} fields but the header has {header_len}",
                    record.len()
                ),
            );
            continue;
        }
        let get = |name: &str| columns.get(name).and_then(|index| record.get(*index));
        let fields = Fields {
            executed_at: get("executed_at"),
            coin_id: get("coin_id"),
            side: get("side"),
            quantity: get("quantity"),
            price: get("price"),
            fee: get("fee"),
            currency: get("currency"),
            note: get("note").map(note_from_cell),
        };
        let side = csv_side(fields.side, line, file);
        accept(line, &fields, side, &CSV_NAMES, base_currency, now, file);
    }
}

/// Ghostfolio's export, as far as an import reads it: each activity kept as its text, so that
/// its line is known and its numbers are read exactly.
#[derive(serde::Deserialize)]
struct GhostfolioDocument<'a> {
    #[serde(borrow)]
    activities: Vec<&'a RawValue>,
}

fn ghostfolio_side(kind: &str) -> Option<Side> {
    match kind.trim().to_ascii_uppercase().as_str() {
        "BUY" => Some(Side::Buy),
        "SELL" => Some(Side::Sell),
        "TRANSFER_IN" => Some(Side::TransferIn),
        "TRANSFER_OUT" => Some(Side::TransferOut),
        _ => None,
    }
}

fn read_ghostfolio(text: &str, base_currency: &str, now: DateTime<Utc>, file: &mut ReadFile) {
    let document: GhostfolioDocument<'_> = match serde_json::from_str(text) {
        Ok(document) => document,
        Err(err) => {
            file.problem(
                err.line() as u64,
                "file",
                format!("is not a Ghostfolio export ({{\"activities\": [...]}}): {err}"),
            );
            return;
        }
    };
    if document.activities.len() > MAX_ROWS {
        file.total = document.activities.len() as u64;
        file.problem(1, "file", format!("has more than {MAX_ROWS} transactions"));
        return;
    }
    let start = text.as_ptr() as usize;
    let mut lines = LineCounter::new(text);
    for raw in document.activities {
        file.total += 1;
        let line = lines.line_at(raw.get().as_ptr() as usize - start);
        let activity: BTreeMap<&str, &RawValue> = match serde_json::from_str(raw.get()) {
            Ok(activity) => activity,
            Err(_) => {
                file.problem(line, "file", "an activity must be a JSON object");
                continue;
            }
        };
        let mut texts: BTreeMap<&str, String> = BTreeMap::new();
        for (name, value) in &activity {
            match json_text(value) {
                Ok(Some(text)) => {
                    texts.insert(name, text);
                }
                Ok(None) => {}
                Err(()) => file.problem(line, name, "must be a string or a number"),
            }
        }
        if let Some(source) = texts.get("dataSource")
            && !source.eq_ignore_ascii_case("COINGECKO")
        {
            file.problem(
                line,
                "dataSource",
                format!(
                    "is {source}; only COINGECKO assets (symbols that are coin ids) can be imported"
                ),
            );
            continue;
        }
        let side = match texts.get("type") {
            None => {
                file.problem(line, "type", "is required");
                None
            }
            Some(kind) => {
                let side = ghostfolio_side(kind);
                if side.is_none() {
                    file.problem(
                        line,
                        "type",
                        format!("is {kind}; only BUY, SELL, TRANSFER_IN and TRANSFER_OUT can be imported"),
                    );
                }
                side
            }
        };
        let get = |name: &str| texts.get(name).map(String::as_str);
        let fields = Fields {
            executed_at: get("date"),
            coin_id: get("symbol"),
            side: get("type"),
            quantity: get("quantity"),
            price: get("unitPrice"),
            fee: get("fee"),
            currency: get("currency"),
            note: get("comment"),
        };
        accept(
            line,
            &fields,
            side,
            &GHOSTFOLIO_NAMES,
            base_currency,
            now,
            file,
        );
    }
}

/// A JSON value as text: a string's content, a number's literal; `None` for `null`; an error
/// for anything else.
fn json_text(value: &RawValue) -> Result<Option<String>, ()> {
    let raw = value.get().trim();
    match raw.as_bytes().first() {
        Some(b'"') => serde_json::from_str::<String>(raw)
            .map(Some)
            .map_err(|_| ()),
        Some(b'-' | b'0'..=b'9') => Ok(Some(raw.to_owned())),
        Some(b'n') if raw == "null" => Ok(None),
        _ => Err(()),
    }
}

/// Lines of offsets met in increasing order, counted once.
struct LineCounter<'a> {
    text: &'a [u8],
    offset: usize,
    line: u64,
}

impl<'a> LineCounter<'a> {
    fn new(text: &'a str) -> Self {
        Self {
            text: text.as_bytes(),
            offset: 0,
            line: 1,
        }
    }

    fn line_at(&mut self, offset: usize) -> u64 {
        let offset = offset.min(self.text.len());
        if offset < self.offset {
            return line_of_offset(&self.text[..offset]);
        }
        self.line += self.text[self.offset..offset]
            .iter()
            .filter(|b| **b == b'\n')
            .count() as u64;
        self.offset = offset;
        self.line
    }
}

/// Writes `rows` (stored transactions, in ledger order) as a file in `format`, amounts in `base_currency`.
pub fn write(format: FileFormat, rows: &[ValidTransaction], base_currency: &str) -> Vec<u8> {
    match format {
        FileFormat::Csv => write_csv(rows, base_currency),
        FileFormat::Json => write_ghostfolio(rows, base_currency),
    }
}

/// The first characters that make a spreadsheet read a cell as a formula (CSV injection).
const FORMULA_STARTS: [char; 6] = ['=', '+', '-', '@', '\t', '\r'];

/// A note as a CSV cell: one a spreadsheet would run as a formula is written with a leading
/// `'` (which spreadsheets show as text), and [`note_from_cell`] takes it off again.
fn note_cell(note: &str) -> std::borrow::Cow<'_, str> {
    if note.starts_with(FORMULA_STARTS) {
        format!("'{note}").into()
    } else {
        note.into()
    }
}

/// A CSV cell's note, without the `'` [`note_cell`] puts before a formula.
fn note_from_cell(cell: &str) -> &str {
    match cell.strip_prefix('\'') {
        Some(rest) if rest.starts_with(FORMULA_STARTS) => rest,
        _ => cell,
    }
}

fn write_csv(rows: &[ValidTransaction], base_currency: &str) -> Vec<u8> {
    let mut writer = csv::Writer::from_writer(Vec::with_capacity(64 * (rows.len() + 1)));
    let currency = base_currency.to_ascii_lowercase();
    // Writing to memory cannot fail, and every record has the header's length.
    let _ = writer.write_record(CSV_COLUMNS);
    for row in rows {
        let _ = writer.write_record([
            crate::wire::timestamp_text(&row.executed_at).as_str(),
            &row.coin_id,
            row.side.as_str(),
            &crate::wire::decimal_text(&row.quantity),
            &crate::wire::decimal_text(&row.price),
            &crate::wire::decimal_text(&row.fee),
            &currency,
            &note_cell(row.note.as_deref().unwrap_or("")),
        ]);
    }
    writer.into_inner().unwrap_or_default()
}

/// One activity of Ghostfolio's export format; amounts written as exact JSON numbers.
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct GhostfolioActivity<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    symbol: &'a str,
    data_source: &'static str,
    currency: String,
    date: String,
    quantity: Box<RawValue>,
    unit_price: Box<RawValue>,
    fee: Box<RawValue>,
    comment: Option<&'a str>,
}

/// Ghostfolio's export document, as an export writes it.
#[derive(serde::Serialize)]
struct GhostfolioExport<'a> {
    meta: GhostfolioMeta,
    activities: Vec<GhostfolioActivity<'a>>,
}

#[derive(serde::Serialize)]
struct GhostfolioMeta {
    date: String,
    version: String,
}

fn json_number(value: Decimal) -> Box<RawValue> {
    RawValue::from_string(crate::wire::decimal_text(&value))
        .unwrap_or_else(|_| RawValue::from_string("0".to_owned()).expect("0 is a JSON number"))
}

fn write_ghostfolio(rows: &[ValidTransaction], base_currency: &str) -> Vec<u8> {
    let currency = base_currency.to_ascii_uppercase();
    let activities: Vec<GhostfolioActivity<'_>> = rows
        .iter()
        .map(|row| GhostfolioActivity {
            kind: match row.side {
                Side::Buy => "BUY",
                Side::Sell => "SELL",
                Side::TransferIn => "TRANSFER_IN",
                Side::TransferOut => "TRANSFER_OUT",
            },
            symbol: &row.coin_id,
            data_source: "COINGECKO",
            currency: currency.clone(),
            date: crate::wire::timestamp_text(&row.executed_at),
            quantity: json_number(row.quantity),
            unit_price: json_number(row.price),
            fee: json_number(row.fee),
            comment: row.note.as_deref(),
        })
        .collect();
    let document = GhostfolioExport {
        meta: GhostfolioMeta {
            date: crate::wire::timestamp_text(&Utc::now()),
            version: format!("coinpulse {}", crate::VERSION),
        },
        activities,
    };
    // Straight to bytes: through a `serde_json::Value`, numbers would become floats.
    let mut bytes = serde_json::to_vec_pretty(&document).unwrap_or_default();
    bytes.push(b'\n');
    bytes
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0)
            .single()
            .expect("a valid time")
    }

    fn dec(text: &str) -> Decimal {
        Decimal::from_str_exact(text).expect("a decimal")
    }

    #[test]
    fn a_csv_file_is_read_with_its_defaults() {
        let csv = "\u{feff}Coin_ID,side,quantity,price,executed_at,note\n\
                   bitcoin,buy,0.5,42000.50,2024-01-05T10:00:00Z,first\n\
                   \n\
                   ethereum,TRANSFER_IN,1e-8,,2024-01-06,\"a, quoted\nnote\"\n\
                   bitcoin,sell,0.1,1,2024-01-07,\n";
        let file = read(FileFormat::Csv, csv.as_bytes(), "usd", now());
        assert_eq!(file.errors, vec![]);
        assert_eq!(file.total, 3);
        let lines: Vec<u64> = file.rows.iter().map(|row| row.line).collect();
        assert_eq!(
            lines,
            [2, 4, 6],
            "a blank line and a line break in quotes counted"
        );
        let second = &file.rows[1].transaction;
        assert_eq!(second.side, Side::TransferIn);
        assert_eq!(second.quantity, dec("0.00000001"));
        assert_eq!(second.price, Decimal::ZERO);
        assert_eq!(
            second.executed_at,
            Utc.with_ymd_and_hms(2024, 1, 6, 0, 0, 0)
                .single()
                .expect("a valid time")
        );
        assert_eq!(second.note.as_deref(), Some("a, quoted\nnote"));
    }

    #[test]
    fn every_bad_row_is_reported_with_its_line_and_column() {
        let csv = "executed_at,coin_id,side,quantity,price,fee,currency\n\
                   2024-01-05T10:00:00Z,bitcoin,buy,1,100,0,usd\n\
                   yesterday,bitcoin,buy,1,100,0,usd\n\
                   2024-01-05T10:00:00Z,Bitcoin,sell,-1,,0,usd\n\
                   2024-01-05T10:00:00Z,bitcoin,hold,1,1,0,usd\n\
                   2024-01-05T10:00:00Z,bitcoin,buy,1,1,0,eur\n\
                   2024-01-05T10:00:00Z,bitcoin,buy\n\
                   2030-01-05T10:00:00Z,bitcoin,buy,1,1,1.5.2,usd\n";
        let file = read(FileFormat::Csv, csv.as_bytes(), "usd", now());
        let found: Vec<(u64, &str)> = file
            .errors
            .iter()
            .map(|e| (e.line, e.field.as_str()))
            .collect();
        assert_eq!(
            found,
            [
                (3, "executed_at"),
                (4, "coin_id"),
                (4, "quantity"),
                (4, "price"),
                (5, "side"),
                (6, "currency"),
                (7, "file"),
                (8, "fee"),
            ],
            "{:#?}",
            file.errors
        );
        assert_eq!(file.total, 7);
        assert_eq!(file.rows.len(), 1);
    }

    #[test]
    fn windows_line_ends_count_lines_and_other_separators_are_named() {
        let csv = "executed_at,coin_id,side,quantity,price\r\n\
                   2024-01-05,bitcoin,buy,1,100\r\n\
                   \r\n\
                   2024-01-06,bitcoin,buy,x,100\r\n";
        let file = read(FileFormat::Csv, csv.as_bytes(), "usd", now());
        assert_eq!(file.rows.len(), 1);
        assert_eq!(
            (file.errors[0].line, file.errors[0].field.as_str()),
            (4, "quantity")
        );
        let file = read(
            FileFormat::Csv,
            b"executed_at;coin_id;side;quantity\n2024-01-05;bitcoin;buy;1\n",
            "usd",
            now(),
        );
        assert_eq!(file.errors.len(), 1);
        assert!(
            file.errors[0].message.contains("separated by commas"),
            "{:?}",
            file.errors
        );
    }

    #[test]
    fn a_header_must_name_known_columns_once_and_the_required_ones() {
        let file = read(
            FileFormat::Csv,
            b"executed_at,coin,side,side\n2024-01-05,bitcoin,buy,buy\n",
            "usd",
            now(),
        );
        let fields: Vec<&str> = file.errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["file", "side", "coin_id", "quantity"]);
        assert!(file.errors.iter().all(|e| e.line == 1));
        assert!(file.rows.is_empty());
    }

    #[test]
    fn a_ghostfolio_export_is_read_exactly_with_lines() {
        let json = r#"{
  "meta": {"version": "2.0"},
  "activities": [
    {"type": "BUY", "symbol": "bitcoin", "dataSource": "COINGECKO", "currency": "USD",
     "date": "2021-09-15T22:00:00.000Z", "quantity": 0.123456789012345678, "unitPrice": 44000.1,
     "fee": 0, "comment": null, "accountId": "x"},
    {"type": "DIVIDEND", "symbol": "bitcoin", "quantity": 1, "date": "2021-09-16"},
    {"type": "SELL", "symbol": "AAPL", "dataSource": "YAHOO", "quantity": 1, "date": "2021-09-16"}
  ]
}"#;
        let file = read(FileFormat::Json, json.as_bytes(), "usd", now());
        assert_eq!(file.total, 3);
        assert_eq!(file.rows.len(), 1);
        let row = &file.rows[0];
        assert_eq!(row.line, 4);
        assert_eq!(row.transaction.quantity, dec("0.123456789012345678"));
        assert_eq!(row.transaction.price, dec("44000.1"));
        let found: Vec<(u64, &str)> = file
            .errors
            .iter()
            .map(|e| (e.line, e.field.as_str()))
            .collect();
        assert_eq!(found, [(7, "type"), (8, "dataSource")]);
    }

    #[test]
    fn what_is_not_a_ghostfolio_export_is_one_problem() {
        for bad in [
            &b"[]"[..],
            b"{\"activities\": 3}",
            b"{\n\n oops",
            b"\xff\xfe",
        ] {
            let file = read(FileFormat::Json, bad, "usd", now());
            assert_eq!(file.errors.len(), 1, "{:?}", String::from_utf8_lossy(bad));
            assert_eq!(file.errors[0].field, "file");
        }
        let file = read(
            FileFormat::Json,
            b"{\"activities\": [1, {\"type\": []}]}",
            "usd",
            now(),
        );
        assert_eq!(file.total, 2);
        assert_eq!(file.errors[0].message, "an activity must be a JSON object");
        assert_eq!(file.errors[1].field, "type");
    }

    fn rows() -> Vec<ValidTransaction> {
        vec![
            ValidTransaction {
                coin_id: "bitcoin".into(),
                side: Side::Buy,
                quantity: dec("0.123456789012345678"),
                price: dec("42000.50"),
                fee: dec("1.5"),
                executed_at: Utc
                    .with_ymd_and_hms(2024, 1, 5, 10, 0, 0)
                    .single()
                    .expect("a valid time")
                    + chrono::Duration::microseconds(123_456),
                note: Some("first, \"quoted\"\nline two".into()),
            },
            ValidTransaction {
                coin_id: "bitcoin".into(),
                side: Side::TransferOut,
                quantity: dec("0.1"),
                price: Decimal::ZERO,
                fee: Decimal::ZERO,
                executed_at: Utc
                    .with_ymd_and_hms(2024, 2, 5, 10, 0, 0)
                    .single()
                    .expect("a valid time"),
                note: None,
            },
            ValidTransaction {
                coin_id: "ethereum".into(),
                side: Side::Buy,
                quantity: dec("2"),
                price: dec("3000"),
                fee: Decimal::ZERO,
                executed_at: Utc
                    .with_ymd_and_hms(2024, 3, 5, 10, 0, 0)
                    .single()
                    .expect("a valid time"),
                note: Some("=HYPERLINK(\"http://example.com\")".into()),
            },
        ]
    }

    #[test]
    fn a_note_a_spreadsheet_would_run_is_written_as_text_and_read_back_as_it_was() {
        let bytes = write(FileFormat::Csv, &rows(), "usd");
        let text = String::from_utf8(bytes).expect("utf-8");
        assert!(
            text.contains(",\"'=HYPERLINK(\"\"http://example.com\"\")\"\n"),
            "{text}"
        );
        for (note, cell) in [
            ("=1+1", "'=1+1"),
            ("-5 % dip", "'-5 % dip"),
            ("@me", "'@me"),
        ] {
            assert_eq!(note_cell(note), cell);
            assert_eq!(note_from_cell(cell), note);
        }
        assert_eq!(note_cell("plain"), "plain");
        assert_eq!(
            note_from_cell("'quoted'"),
            "'quoted'",
            "only a guard is taken off"
        );
    }

    #[test]
    fn an_export_reads_back_unchanged_in_either_format() {
        for format in [FileFormat::Csv, FileFormat::Json] {
            let bytes = write(format, &rows(), "usd");
            let file = read(format, &bytes, "usd", now());
            assert_eq!(file.errors, vec![], "{format:?}");
            let back: Vec<ValidTransaction> =
                file.rows.into_iter().map(|row| row.transaction).collect();
            assert_eq!(back, rows(), "{format:?}");
            let other = read(format, &bytes, "eur", now());
            assert_eq!(other.errors_total, 3, "currency checked: {format:?}");
        }
    }

    #[test]
    fn too_many_rows_are_refused() {
        let mut csv = String::from("executed_at,coin_id,side,quantity,price\n");
        for _ in 0..=MAX_ROWS {
            csv.push_str("2024-01-05,bitcoin,buy,1,1\n");
        }
        let file = read(FileFormat::Csv, csv.as_bytes(), "usd", now());
        assert_eq!(file.errors.last().map(|e| e.field.as_str()), Some("file"));
        assert!(
            file.errors
                .last()
                .expect("a problem")
                .message
                .contains("more than 100000")
        );
    }
}
