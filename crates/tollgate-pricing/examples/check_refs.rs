//! Compares the built-in catalog with the reference catalogs in ../shared/pricing.
use tollgate_pricing::{import, Catalog};
fn main() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/pricing");
    let g = std::fs::read_to_string(format!("{dir}/genai-prices-v2-data.json")).unwrap();
    let l = std::fs::read_to_string(format!("{dir}/litellm-model-prices.json")).unwrap();
    let (gc, gr) = import::genai_prices_with_report(&g).unwrap();
    let (lc, lr) = import::litellm_with_report(&l).unwrap();
    println!("genai: read {} imported {} skipped {} cond {} dup {} fields {:?}", gr.models_read, gr.entries_imported, gr.skipped_models.len(), gr.skipped_conditions, gr.duplicates, gr.skipped_fields);
    println!("litellm: read {} imported {} skipped {} dup {} fields {}", lr.models_read, lr.entries_imported, lr.skipped_models.len(), lr.duplicates, lr.skipped_fields.len());
    let mut reasons = std::collections::BTreeMap::new();
    for (_, r) in gr.skipped_models.iter().chain(lr.skipped_models.iter()) { *reasons.entry(r.clone()).or_insert(0) += 1; }
    println!("{reasons:?}");
    println!("litellm fields {:?}", lr.skipped_fields);
    let far = chrono::DateTime::<chrono::Utc>::MAX_UTC;
    for (name, c) in [("genai", &gc), ("litellm", &lc)] {
        let missing: Vec<String> = Catalog::builtin().entries().filter(|e| c.lookup(Some(&e.provider), &e.model, far).map_or(true, |t| t.provider != e.provider)).map(|e| e.label()).collect();
        println!("{name} missing: {missing:?}");
    }
    for (name, c) in [("genai", &gc), ("litellm", &lc)] {
        println!("=== {name}");
        for d in import::discrepancies(Catalog::builtin(), c) { println!("{d}  [{}]", d.their_model); }
    }
    let _ = std::fs::write("/tmp/genai.toml", gc.to_toml_string());
    let _ = std::fs::write("/tmp/litellm.toml", lc.to_toml_string());
}
