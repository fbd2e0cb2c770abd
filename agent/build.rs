//! Compiles the what-if page into `wattwise serve`: when `WATTWISE_WEB_DIST` names a
//! built page (web/build.sh's `web/dist`), every file under it becomes an
//! `include_bytes!` entry of `$OUT_DIR/web_page.rs`; unset, the page is not built in
//! (`wattwise serve` then serves the API, and the page only with `--web DIR`).

use std::path::{Path, PathBuf};

fn files(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            files(&path, out)?;
        } else {
            out.push(path);
        }
    }
    Ok(())
}

fn main() {
    println!("cargo:rerun-if-env-changed=WATTWISE_WEB_DIST");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let mut code = String::from("&[\n");
    if let Some(dist) = std::env::var_os("WATTWISE_WEB_DIST").filter(|d| !d.is_empty()) {
        let dist = PathBuf::from(dist);
        let dist = dist
            .canonicalize()
            .unwrap_or_else(|e| panic!("WATTWISE_WEB_DIST={}: {e}", dist.display()));
        assert!(
            dist.join("index.html").is_file(),
            "WATTWISE_WEB_DIST={}: no index.html (build the page with web/build.sh)",
            dist.display()
        );
        println!("cargo:rerun-if-changed={}", dist.display());
        let mut all = Vec::new();
        files(&dist, &mut all)
            .unwrap_or_else(|e| panic!("WATTWISE_WEB_DIST={}: {e}", dist.display()));
        all.sort();
        for file in all {
            println!("cargo:rerun-if-changed={}", file.display());
            let rel = file.strip_prefix(&dist).expect("under dist");
            let rel = rel.to_str().expect("UTF-8 file names").replace('\\', "/");
            code.push_str(&format!(
                "    ({rel:?}, include_bytes!({:?}) as &[u8]),\n",
                file.display().to_string()
            ));
        }
    }
    code.push(']');
    std::fs::write(out.join("web_page.rs"), code).expect("write web_page.rs");
}
