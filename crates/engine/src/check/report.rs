//! The findings of one precheck, as a table for people or one JSON array for programs.

use std::io::{self, Write};

use super::{Finding, Item, Outcome};

#[derive(Debug)]
pub struct Report {
    ignore: Vec<Item>,
    findings: Vec<Finding>,
    /// The `ACL SETUSER` line of each server, by its label: printed under the table.
    pub acl_lines: Vec<(String, String)>,
}

impl Report {
    pub(super) fn new(ignore: &[Item]) -> Report {
        Report {
            ignore: ignore.to_vec(),
            findings: Vec::new(),
            acl_lines: Vec::new(),
        }
    }

    /// Whether `item` is to be run (not in `[check] ignore`).
    pub(super) fn runs(&self, item: Item) -> bool {
        !self.ignore.contains(&item)
    }

    /// Keeps `finding` unless its item is ignored.
    pub(super) fn add(&mut self, finding: Finding) {
        if self.runs(finding.item) {
            self.findings.push(finding);
        }
    }

    pub fn findings(&self) -> &[Finding] {
        &self.findings
    }

    /// Rewrites every finding's words (what was found, how to fix it): a program adds its own
    /// names for the settings they mention (the CLI its flags).
    pub fn reword(&mut self, mut words: impl FnMut(String) -> String) {
        for f in &mut self.findings {
            f.found = words(std::mem::take(&mut f.found));
            f.fix = words(std::mem::take(&mut f.fix));
        }
    }

    pub fn into_findings(self) -> Vec<Finding> {
        self.findings
    }

    /// Whether any item failed: `ferry check` then exits 1.
    pub fn failed(&self) -> bool {
        self.findings.iter().any(|f| f.result == Outcome::Fail)
    }

    /// One JSON array of `{item, result, found, fix}`, on one line.
    pub fn write_json(&self, out: &mut impl Write) -> io::Result<()> {
        serde_json::to_writer(&mut *out, &self.findings)?;
        writeln!(out)
    }

    /// A table: item, result, what was found, and under it how to fix it; then a count.
    pub fn write_table(&self, out: &mut impl Write) -> io::Result<()> {
        let width = self
            .findings
            .iter()
            .map(|f| f.item.name().len())
            .max()
            .unwrap_or(4)
            .max(4);
        writeln!(out, "{:width$}  RESULT  FOUND / FIX", "ITEM")?;
        for f in &self.findings {
            writeln!(
                out,
                "{:width$}  {:6}  {}",
                f.item.name(),
                f.result.name(),
                f.found
            )?;
            if !f.fix.is_empty() {
                writeln!(out, "{:width$}  {:6}  fix: {}", "", "", f.fix)?;
            }
        }
        let count = |o: Outcome| self.findings.iter().filter(|f| f.result == o).count();
        writeln!(
            out,
            "\n{} passed, {} warnings, {} failed",
            count(Outcome::Pass),
            count(Outcome::Warn),
            count(Outcome::Fail)
        )?;
        if !self.acl_lines.is_empty() {
            writeln!(
                out,
                "\nLeast privilege: users with only these rights pass every item (PASSWORD is the user's password):"
            )?;
            for (label, line) in &self.acl_lines {
                writeln!(out, "  {label}: {line}")?;
            }
        }
        Ok(())
    }
}
