//! CSV export of links and CSV import into bulk creation. Columns are named in a header
//! row; import refuses unknown columns (a typo must not silently drop data).

use linkgate_common::domain::RedirectStatus;

use crate::links::{CreateLink, LinkView};
use crate::problem::ApiError;

/// Most rows one import may hold.
pub const MAX_IMPORT_ROWS: usize = 10_000;

/// Columns written by export; import accepts the subset that describes a new link.
pub const EXPORT_COLUMNS: &[&str] = &[
    "code",
    "domain",
    "short_url",
    "target",
    "title",
    "tags",
    "redirect_status",
    "forward_query",
    "password_protected",
    "expires_at",
    "max_clicks",
    "fallback_url",
    "state",
    "clicks",
    "created_at",
];

const IMPORT_COLUMNS: &[&str] = &[
    "target",
    "code",
    "domain",
    "title",
    "tags",
    "expires_at",
    "max_clicks",
    "redirect_status",
    "forward_query",
    "fallback_url",
];

/// Links as CSV; tags are separated by spaces.
pub fn export(links: &[LinkView]) -> Result<Vec<u8>, ApiError> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    let fail = |e: csv::Error| ApiError::Internal(format!("csv: {e}"));
    writer.write_record(EXPORT_COLUMNS).map_err(fail)?;
    for l in links {
        let tags = l
            .tags
            .iter()
            .map(linkgate_common::domain::Tag::as_str)
            .collect::<Vec<_>>()
            .join(" ");
        writer
            .write_record([
                l.code.as_str(),
                l.domain.as_str(),
                l.short_url.as_str(),
                l.target.as_str(),
                l.title.as_deref().unwrap_or(""),
                tags.as_str(),
                &l.redirect_status.to_string(),
                if l.forward_query { "true" } else { "false" },
                if l.password_protected {
                    "true"
                } else {
                    "false"
                },
                &l.expires_at
                    .map(linkgate_common::domain::Timestamp::to_rfc3339)
                    .unwrap_or_default(),
                &l.max_clicks.map(|m| m.to_string()).unwrap_or_default(),
                l.fallback_url.as_deref().unwrap_or(""),
                l.state.as_str(),
                &l.clicks.to_string(),
                &l.created_at.to_rfc3339(),
            ])
            .map_err(fail)?;
    }
    writer
        .into_inner()
        .map_err(|e| ApiError::Internal(format!("csv: {e}")))
}

/// Parses an import: a header row naming columns from the import set (`target` required),
/// then one link per row. Export's extra columns (`short_url`, `clicks`, ...) are accepted
/// and ignored, so an export can be imported elsewhere.
pub fn parse_import(body: &[u8]) -> Result<Vec<CreateLink>, ApiError> {
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_reader(body);
    let headers = reader
        .headers()
        .map_err(|e| ApiError::BadRequest(format!("invalid CSV header: {e}")))?
        .clone();
    let mut columns = Vec::new();
    for name in &headers {
        let name = name.to_ascii_lowercase();
        if !IMPORT_COLUMNS.contains(&name.as_str()) && !EXPORT_COLUMNS.contains(&name.as_str()) {
            return Err(ApiError::BadRequest(format!(
                "unknown CSV column {:?}; expected some of {}",
                name.chars().take(40).collect::<String>(),
                IMPORT_COLUMNS.join(", ")
            )));
        }
        columns.push(name);
    }
    if !columns.iter().any(|c| c == "target") {
        return Err(ApiError::BadRequest(
            "the CSV needs a `target` column".to_owned(),
        ));
    }
    let mut items = Vec::new();
    for (row, record) in reader.records().enumerate() {
        let record = record
            .map_err(|e| ApiError::BadRequest(format!("invalid CSV row {}: {e}", row + 2)))?;
        if items.len() == MAX_IMPORT_ROWS {
            return Err(ApiError::invalid(
                "csv",
                format!("holds more than {MAX_IMPORT_ROWS} rows"),
            ));
        }
        let mut item = CreateLink::default();
        for (name, value) in columns.iter().zip(record.iter()) {
            if value.is_empty() {
                continue;
            }
            let bad = |what: &str| ApiError::BadRequest(format!("row {}: {name} {what}", row + 2));
            match name.as_str() {
                "target" => value.clone_into(&mut item.target),
                "code" => item.code = Some(value.to_owned()),
                "domain" => item.domain = Some(value.to_owned()),
                "title" => item.title = Some(value.to_owned()),
                "tags" => {
                    item.tags = value
                        .split([' ', ';', ','])
                        .filter(|t| !t.is_empty())
                        .map(str::to_owned)
                        .collect();
                }
                "expires_at" => item.expires_at = Some(value.to_owned()),
                "max_clicks" => {
                    item.max_clicks =
                        Some(value.parse().map_err(|_| bad("must be a whole number"))?);
                }
                "redirect_status" => {
                    let code: u16 = value
                        .parse()
                        .map_err(|_| bad("must be 301, 302, 307 or 308"))?;
                    RedirectStatus::from_code(code)
                        .ok_or_else(|| bad("must be 301, 302, 307 or 308"))?;
                    item.redirect_status = Some(code);
                }
                "forward_query" => {
                    item.forward_query = match value.to_ascii_lowercase().as_str() {
                        "true" | "1" | "yes" => true,
                        "false" | "0" | "no" => false,
                        _ => return Err(bad("must be true or false")),
                    };
                }
                "fallback_url" => item.fallback_url = Some(value.to_owned()),
                _ => {} // export-only columns
            }
        }
        items.push(item);
    }
    if items.is_empty() {
        return Err(ApiError::invalid("csv", "holds no links"));
    }
    Ok(items)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_import_reads_named_columns_in_any_order() {
        let csv = "code,target,tags,max_clicks\nlaunch-1,https://a.example/x,promo q4,5\n,https://b.example,,\n";
        let items = parse_import(csv.as_bytes()).unwrap();
        assert_eq!(items.len(), 2);
        assert_eq!(items[0].code.as_deref(), Some("launch-1"));
        assert_eq!(items[0].tags, ["promo", "q4"]);
        assert_eq!(items[0].max_clicks, Some(5));
        assert_eq!(items[1].code, None);
        assert_eq!(items[1].target, "https://b.example");
    }

    #[test]
    fn unknown_columns_and_bad_values_are_refused() {
        assert!(parse_import(b"target,colour\nhttps://a.example,red\n").is_err());
        assert!(parse_import(b"code\nabc\n").is_err());
        assert!(parse_import(b"target,max_clicks\nhttps://a.example,many\n").is_err());
        assert!(parse_import(b"target\n").is_err());
    }
}
