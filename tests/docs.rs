//! The documentation's promises about itself: every relative link in README.md, CHANGELOG.md and
//! docs/ resolves (to a file, and to a heading where it names one), and every test a page cites
//! by name exists.

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn pages() -> Vec<PathBuf> {
    let mut pages = vec![root().join("README.md"), root().join("CHANGELOG.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root().join("docs")).unwrap().map(|e| e.unwrap().path()).filter(|p| p.extension().is_some_and(|e| e == "md")).collect();
    docs.sort();
    pages.extend(docs);
    pages
}

/// The text outside code: fenced blocks and inline code hold no links.
fn prose(text: &str) -> String {
    let mut out = String::new();
    let mut fenced = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if !fenced {
            let mut in_code = false;
            for c in line.chars() {
                if c == '`' {
                    in_code = !in_code;
                } else if !in_code {
                    out.push(c);
                }
            }
            out.push('\n');
        }
    }
    out
}

/// GitHub's anchor for a heading.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| if c.is_alphanumeric() || c == '-' || c == '_' { Some(c) } else if c == ' ' { Some('-') } else { None })
        .collect()
}

fn anchors(page: &Path) -> Vec<String> {
    std::fs::read_to_string(page).unwrap().lines().filter(|l| l.starts_with('#')).map(|l| slug(l.trim_start_matches('#'))).collect()
}

#[test]
fn every_link_in_the_docs_resolves() {
    let mut checked = 0;
    for page in pages() {
        let text = prose(&std::fs::read_to_string(&page).unwrap());
        for (i, _) in text.match_indices("](") {
            let target = &text[i + 2..];
            let target = &target[..target.find(')').expect("a closed link")];
            if target.starts_with("http://") || target.starts_with("https://") || target.starts_with("mailto:") {
                continue;
            }
            let (path, anchor) = target.split_once('#').unwrap_or((target, ""));
            let file = if path.is_empty() { page.clone() } else { page.parent().unwrap().join(path) };
            assert!(file.exists(), "{}: link to {target}: no such file", page.display());
            if !anchor.is_empty() {
                assert!(anchors(&file).iter().any(|a| a == anchor), "{}: link to {target}: no such heading", page.display());
            }
            checked += 1;
        }
    }
    assert!(checked >= 20, "the README links every topic page ({checked} links)");
}

fn sources(dir: &Path, out: &mut String) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if path.is_dir() {
            if name != "node_modules" && name != "target" {
                sources(&path, out);
            }
        } else if name.ends_with(".rs") || name.ends_with(".c") {
            out.push_str(&std::fs::read_to_string(&path).unwrap_or_default());
        }
    }
}

#[test]
fn every_test_the_docs_cite_exists() {
    let mut code = String::new();
    for dir in ["tests", "src", "host-example", "fuzz"] {
        sources(&root().join(dir), &mut code);
    }
    let mut cited = 0;
    for page in pages() {
        let text = std::fs::read_to_string(&page).unwrap();
        for token in text.split('`').skip(1).step_by(2) {
            // A test's name: snake_case, at least four words.
            let is_name = token.split('_').count() >= 4 && token.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_') && !token.starts_with('_');
            if !is_name {
                continue;
            }
            assert!(code.contains(&format!("fn {token}(")), "{} cites `{token}`, which no test or function is called", page.display());
            cited += 1;
        }
    }
    assert!(cited >= 30, "the docs cite their tests ({cited})");
}
