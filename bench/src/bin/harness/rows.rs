//! Measurements collected into rows, one per workload × system × store × driver × variant, each
//! holding every run's result.

use std::collections::BTreeMap;

use anyhow::Result;

use crate::report::{Measurement, Row};
use crate::workloads::Variant;

/// Collects measurements into rows keyed across runs.
#[derive(Default)]
pub(crate) struct Rows {
    pub(crate) rows: Vec<Row>,
}

impl Rows {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn add(
        &mut self,
        system: &str,
        store: &str,
        driver: &str,
        workload: &str,
        variant: &str,
        settings: BTreeMap<String, String>,
        result: Result<Measurement>,
    ) {
        let key = format!("{workload}|{system}|{store}|{driver}|{variant}");
        let idx = match self.rows.iter().position(|r| r.key == key) {
            Some(i) => i,
            None => {
                self.rows.push(Row {
                    key,
                    system: system.into(),
                    store: store.into(),
                    driver: driver.into(),
                    workload: workload.into(),
                    variant: variant.into(),
                    settings,
                    status: "ok".into(),
                    runs: Vec::new(),
                });
                self.rows.len() - 1
            }
        };
        let row = &mut self.rows[idx];
        match result {
            Ok(m) => {
                let rate = m.jobs_per_s.unwrap_or(0.0);
                eprintln!(
                    "  {workload} {system} {store} {driver} {variant}: {rate:.0}/s{}",
                    m.latency_ms
                        .as_ref()
                        .map(|l| format!(", p50 {:.2} ms, p99 {:.2} ms", l.p50, l.p99))
                        .unwrap_or_default()
                );
                row.runs.push(m);
            }
            Err(e) => {
                eprintln!("  {workload} {system} {store} {driver} {variant}: FAILED: {e:#}");
                row.status = format!("failed: {}", format!("{e:#}").replace('|', "/"));
            }
        }
    }

    pub(crate) fn add_variant(&mut self, system: &str, store: &str, driver: &str, v: Variant) {
        self.add(
            system, store, driver, v.workload, &v.variant, v.settings, v.result,
        );
    }

    pub(crate) fn not_installed(&mut self, system: &str, workload: &str, why: &str) {
        self.not_installed_at(system, "PostgreSQL", "–", workload, why);
    }

    pub(crate) fn not_installed_at(
        &mut self,
        system: &str,
        store: &str,
        driver: &str,
        workload: &str,
        why: &str,
    ) {
        let key = format!("{workload}|{system}|{store}|{driver}|not installed");
        if self.rows.iter().any(|r| r.key == key) {
            return;
        }
        self.rows.push(Row {
            key,
            system: system.into(),
            store: store.into(),
            driver: driver.into(),
            workload: workload.into(),
            variant: "–".into(),
            settings: BTreeMap::new(),
            status: format!("not installed ({why})"),
            runs: Vec::new(),
        });
    }

    /// The first measured row; for `leasehold`, the raw-HTTP driver's (see [`Rows::find_driver`]).
    pub(crate) fn find(
        &self,
        workload: &str,
        system: &str,
        store: &str,
        variant_prefix: &str,
    ) -> Option<&Row> {
        let driver = if system == "leasehold" {
            "raw-http"
        } else {
            ""
        };
        self.find_driver(workload, system, store, driver, variant_prefix)
    }

    /// The first measured row through `driver` (`""`: any driver).
    pub(crate) fn find_driver(
        &self,
        workload: &str,
        system: &str,
        store: &str,
        driver: &str,
        variant_prefix: &str,
    ) -> Option<&Row> {
        self.find_variant(workload, system, store, driver, |v| {
            v.starts_with(variant_prefix)
        })
    }

    /// The first measured row through `driver` (`""`: any driver) whose variant `matches`.
    pub(crate) fn find_variant(
        &self,
        workload: &str,
        system: &str,
        store: &str,
        driver: &str,
        matches: impl Fn(&str) -> bool,
    ) -> Option<&Row> {
        self.rows.iter().find(|r| {
            r.workload == workload
                && r.system == system
                && r.store == store
                && (driver.is_empty() || r.driver == driver)
                && matches(&r.variant)
                && r.status == "ok"
                && !r.runs.is_empty()
        })
    }
}

/// The store label of a PostgreSQL row.
pub(crate) fn store_pg(sc: &str) -> String {
    format!("PostgreSQL sc={sc}")
}

/// The store label of a SQLite row.
pub(crate) fn store_sqlite(sync: &str) -> String {
    format!("SQLite {}", sync.to_uppercase())
}
