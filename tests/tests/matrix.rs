//! The ground-truth matrix's static checks (no privileges): every row names a test that exists,
//! no family has two rows, every family the agent's golden renderings hold has a row, and the
//! README carries the table as the matrix renders it (`cargo xtask bless` rewrites it there).
use std::{collections::BTreeSet, path::Path};

use nodetel_integration_tests::matrix::{self, ROWS};

const BEGIN: &str = "<!-- ground-truth-matrix:begin (cargo xtask bless writes this table) -->\n";
const END: &str = "<!-- ground-truth-matrix:end -->";

fn repo() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

#[test]
fn every_row_names_a_test_that_exists() {
    let mut named = 0;
    for row in ROWS {
        let (file, function) = row.test.split_once("::").unwrap_or_else(|| {
            panic!(
                "{}: test {:?} is not file.rs::function",
                row.family, row.test
            )
        });
        let path = repo().join("tests/tests").join(file);
        let source = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {}: {e}", row.family, path.display()));
        assert!(
            source.contains(&format!("fn {function}(")),
            "{}: no fn {function} in {file}",
            row.family
        );
        named += 1;
    }
    assert_eq!(named, ROWS.len());
    let mut seen = BTreeSet::new();
    for row in ROWS.iter().filter(|r| r.family != "-") {
        assert!(seen.insert(row.family), "{} has two rows", row.family);
    }
}

#[test]
fn every_family_of_the_golden_renderings_has_a_row() {
    let dir = repo().join("agent/testdata/golden");
    let mut families = BTreeSet::new();
    for entry in std::fs::read_dir(&dir).expect("golden dir").flatten() {
        let text = std::fs::read_to_string(entry.path()).expect("golden file");
        families.extend(
            text.lines()
                .filter_map(|l| l.strip_prefix("# TYPE "))
                .filter_map(|l| l.split_whitespace().next())
                .map(str::to_string),
        );
    }
    assert!(
        families.len() > 40,
        "only {} families in {}",
        families.len(),
        dir.display()
    );
    let missing: Vec<&String> = families
        .iter()
        .filter(|f| !matrix::is_self_metric(f) && matrix::row_of(f).is_none())
        .collect();
    assert!(
        missing.is_empty(),
        "families with no matrix row: {missing:?}"
    );
}

#[test]
fn the_readme_carries_the_matrix() {
    let readme = std::fs::read_to_string(repo().join("README.md")).expect("README");
    let want = matrix::markdown();
    let got = readme
        .split_once(BEGIN)
        .and_then(|(_, rest)| rest.split_once(END))
        .map(|(table, _)| table);
    if got != Some(want.as_str()) {
        // Left for `cargo xtask bless`, which puts it between the markers.
        let out = repo().join("target/golden-actual");
        std::fs::create_dir_all(&out).expect("target/golden-actual");
        std::fs::write(out.join("README-matrix.md"), &want).expect("write");
        panic!(
            "README.md's ground-truth matrix differs from tests/src/matrix.rs (or its markers \
             are missing): run `cargo xtask bless`"
        );
    }
}
