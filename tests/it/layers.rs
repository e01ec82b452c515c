//! The house rules, checked on the source: modules are layered in the groups `src/lib.rs`
//! lists them in (blank-line separated, bottom first), and no file imports from its own
//! layer's other modules or from a layer above; and no files import each other in a
//! circle, inline test modules included. Run with `--nocapture` for the figures.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::support::repo;

/// A source file and the module path it defines (`src/steer/table.rs` → `steer::table`).
struct SourceFile {
    path: PathBuf,
    module: Vec<String>,
    text: String,
}

fn source_files(dir: &Path, out: &mut Vec<SourceFile>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("read src")
        .map(|e| e.expect("dir entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            source_files(&path, out);
            continue;
        }
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let relative = path.strip_prefix(repo("src")).expect("under src");
        let mut module: Vec<String> = relative
            .with_extension("")
            .iter()
            .map(|c| c.to_string_lossy().into_owned())
            .collect();
        if module.last().is_some_and(|m| m == "mod") {
            module.pop();
        }
        if module == ["lib"] || module == ["main"] {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("read source");
        out.push(SourceFile { path, module, text });
    }
}

/// The text with comments and string and character literals blanked out.
fn code_only(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < bytes.len() {
        let rest = &text[i..];
        if rest.starts_with("//") {
            let end = rest.find('\n').unwrap_or(rest.len());
            i += end;
        } else if rest.starts_with("/*") {
            let end = rest.find("*/").map_or(rest.len(), |e| e + 2);
            out.push(' ');
            i += end;
        } else if let Some(raw) = rest.strip_prefix("r#\"") {
            let end = raw.find("\"#").map_or(rest.len(), |e| e + 5);
            out.push_str("\"\"");
            i += end;
        } else if rest.starts_with('"') {
            let mut j = 1;
            while j < rest.len() && rest.as_bytes()[j] != b'"' {
                j += if rest.as_bytes()[j] == b'\\' { 2 } else { 1 };
            }
            out.push_str("\"\"");
            i += (j + 1).min(rest.len());
        } else if rest.starts_with('\'')
            && (rest[1..].starts_with("\\") || rest.get(2..3) == Some("'"))
        {
            let end = rest[1..].find('\'').map_or(rest.len(), |e| e + 2);
            out.push_str("' '");
            i += end;
        } else {
            let c = rest.chars().next().expect("a char");
            out.push(c);
            i += c.len_utf8();
        }
    }
    out
}

/// Every path a piece of code names from `crate` or `super`, as (path, whether it was
/// named inside an inline module, where `super` is the file itself).
fn named_paths(code: &str) -> Vec<(Vec<String>, bool)> {
    // Inline modules: the byte ranges of `mod name { ... }` blocks.
    let mut inline = Vec::new();
    let mut search = 0;
    while let Some(at) = code[search..].find("mod ") {
        let start = search + at;
        search = start + 4;
        let head: String = code[search..]
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_' || c.is_whitespace())
            .collect();
        let after = search + head.len();
        if head.trim().is_empty() || !code[after..].starts_with('{') {
            continue;
        }
        let mut depth = 0;
        for (k, c) in code[after..].char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        inline.push(start..after + k);
                        break;
                    }
                }
                _ => {}
            }
        }
    }
    let inside = |at: usize| inline.iter().any(|r| r.contains(&at));
    let mut paths = Vec::new();
    for root in ["crate::", "super::"] {
        let mut from = 0;
        while let Some(at) = code[from..].find(root) {
            let start = from + at;
            from = start + root.len();
            if code[..start]
                .chars()
                .next_back()
                .is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':')
            {
                continue;
            }
            let base = vec![root.trim_end_matches(':').to_string()];
            expand(&code[from..], base, &mut |p| paths.push((p, inside(start))));
        }
    }
    paths
}

/// Expands `a::b::{c, d::{e, f}}` after a root into every full path.
fn expand(rest: &str, base: Vec<String>, emit: &mut impl FnMut(Vec<String>)) {
    let mut path = base;
    let mut rest = rest;
    loop {
        let name: String = rest
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        if name.is_empty() {
            if let Some(group) = rest.strip_prefix('{') {
                let mut depth = 1;
                let mut item_start = 0;
                for (k, c) in group.char_indices() {
                    match c {
                        '{' => depth += 1,
                        '}' | ',' if depth == 1 => {
                            let item = group[item_start..k].trim();
                            if !item.is_empty() {
                                expand(item, path.clone(), emit);
                            }
                            item_start = k + 1;
                            if c == '}' {
                                return;
                            }
                        }
                        '}' => depth -= 1,
                        _ => {}
                    }
                }
            }
            emit(path);
            return;
        }
        rest = &rest[name.len()..];
        path.push(name);
        match rest.strip_prefix("::") {
            Some(more) => rest = more,
            None => {
                emit(path);
                return;
            }
        }
    }
}

#[test]
fn layers_run_one_way_and_no_files_import_in_a_circle() {
    let lib = std::fs::read_to_string(repo("src/lib.rs")).expect("lib.rs");
    // Module → layer number, from the groups of `pub mod` lines.
    let mut layers: BTreeMap<String, usize> = BTreeMap::new();
    let mut layer = 0;
    let mut in_group = false;
    for line in lib.lines() {
        match line.strip_prefix("pub mod ") {
            Some(module) => {
                layers.insert(module.trim_end_matches(';').to_string(), layer);
                in_group = true;
            }
            None if line.trim().is_empty() && in_group => {
                layer += 1;
                in_group = false;
            }
            None => {}
        }
    }
    let mut files = Vec::new();
    source_files(&repo("src"), &mut files);
    let file_of = |path: &[String]| -> Option<usize> {
        (1..=path.len())
            .rev()
            .find_map(|n| files.iter().position(|f| f.module == path[..n]))
    };
    let mut edges: BTreeMap<usize, BTreeSet<usize>> = BTreeMap::new();
    let mut uphill = Vec::new();
    let mut named = 0;
    for (index, file) in files.iter().enumerate() {
        for (path, in_inline_module) in named_paths(&code_only(&file.text)) {
            named += 1;
            let mut module = file.module.clone();
            if file.path.ends_with("mod.rs") {
                // `super` in a folder's face is the folder's parent.
                module.push(String::new());
            }
            let resolved: Vec<String> = match path[0].as_str() {
                "crate" => path[1..].to_vec(),
                _ => {
                    // Each `super` climbs one module; inside an inline module the first
                    // one only leaves that module, back into this file.
                    let supers = path.iter().take_while(|p| *p == "super").count();
                    let climb = supers - usize::from(in_inline_module);
                    let mut base = module[..module.len().saturating_sub(climb)].to_vec();
                    base.retain(|m| !m.is_empty());
                    base.extend(path[supers..].iter().cloned());
                    base
                }
            };
            let Some(target) = file_of(&resolved) else {
                continue; // a name of lib.rs itself
            };
            if target == index {
                continue;
            }
            edges.entry(index).or_default().insert(target);
            let (from, to) = (&file.module[0], &files[target].module[0]);
            if from != to
                && let (Some(from), Some(to)) = (layers.get(from), layers.get(to))
                && to >= from
            {
                uphill.push(format!(
                    "{} -> {} ({})",
                    file.path.display(),
                    files[target].path.display(),
                    resolved.join("::")
                ));
            }
        }
    }
    // Circles: strongly connected components of more than one file (Tarjan).
    let mut circles = Vec::new();
    {
        struct Walk<'a> {
            edges: &'a BTreeMap<usize, BTreeSet<usize>>,
            index: Vec<Option<usize>>,
            low: Vec<usize>,
            stack: Vec<usize>,
            on_stack: Vec<bool>,
            next: usize,
            circles: Vec<Vec<usize>>,
        }
        fn visit(w: &mut Walk, v: usize) {
            w.index[v] = Some(w.next);
            w.low[v] = w.next;
            w.next += 1;
            w.stack.push(v);
            w.on_stack[v] = true;
            for &t in w.edges.get(&v).into_iter().flatten() {
                match w.index[t] {
                    None => {
                        visit(w, t);
                        w.low[v] = w.low[v].min(w.low[t]);
                    }
                    Some(i) if w.on_stack[t] => w.low[v] = w.low[v].min(i),
                    Some(_) => {}
                }
            }
            if Some(w.low[v]) == w.index[v] {
                let mut component = Vec::new();
                while let Some(t) = w.stack.pop() {
                    w.on_stack[t] = false;
                    component.push(t);
                    if t == v {
                        break;
                    }
                }
                if component.len() > 1 {
                    w.circles.push(component);
                }
            }
        }
        let mut walk = Walk {
            edges: &edges,
            index: vec![None; files.len()],
            low: vec![0; files.len()],
            stack: Vec::new(),
            on_stack: vec![false; files.len()],
            next: 0,
            circles: Vec::new(),
        };
        for v in 0..files.len() {
            if walk.index[v].is_none() {
                visit(&mut walk, v);
            }
        }
        for component in walk.circles {
            let names: Vec<String> = component
                .iter()
                .map(|&f| files[f].path.display().to_string())
                .collect();
            circles.push(names.join(", "));
        }
    }
    let arrows: usize = edges.values().map(BTreeSet::len).sum();
    println!(
        "{} files, {} modules in {} layers; {named} crate/super paths named, {arrows} file-to-file imports; {} run up or across a layer; {} circles",
        files.len(),
        layers.len(),
        layer + 1,
        uphill.len(),
        circles.len()
    );
    assert!(
        layer > 6 && files.len() > 40 && arrows > 80,
        "the source was not read: {} layers, {} files, {arrows} imports",
        layers.len(),
        files.len()
    );
    assert!(
        uphill.is_empty(),
        "imports up or across a layer:\n{}",
        uphill.join("\n")
    );
    assert!(
        circles.is_empty(),
        "files in a circle:\n{}",
        circles.join("\n")
    );
}

/// The writer's core stays small and its decisions pure: the node table, the scheduler,
/// node carry-over, the outbox and the view neither wait (`.await`, tokio's tasks and
/// channels) nor read the clock, and only the run loop (`publish/mod.rs`) stores what
/// readers load. Health supervision lives in `health/`, the status page's census in
/// `admin/`: the publisher spawns no check task and makes no census.
#[test]
fn the_single_writer_is_a_small_core_around_pure_parts() {
    let mut files = Vec::new();
    source_files(&repo("src"), &mut files);
    let publish = repo("src/answer/publish");
    let pure = [
        "table.rs",
        "schedule.rs",
        "nodes.rs",
        "outbox.rs",
        "view.rs",
    ];
    let mut found = 0;
    for file in &files {
        let Ok(name) = file.path.strip_prefix(&publish) else {
            continue;
        };
        // Inline tests may wait (paused time); the code they test may not.
        let text = file.text.split("#[cfg(test)]").next().unwrap_or_default();
        let code = code_only(text);
        let name = name.display().to_string();
        if pure.contains(&name.as_str()) {
            found += 1;
            for forbidden in [
                ".await",
                "tokio::spawn",
                "tokio::task",
                "mpsc",
                "oneshot",
                "Instant::now",
                "SystemTime::now",
                ".store(",
            ] {
                assert!(
                    !code.contains(forbidden),
                    "{name} is meant to be pure but uses `{forbidden}`"
                );
            }
        } else if name != "mod.rs" {
            assert!(
                !code.contains(".store("),
                "{name}: only the run loop stores snapshots and views"
            );
        }
        for forbidden in ["run_checks", "JoinSet", "census("] {
            assert!(
                !code.contains(forbidden),
                "publish/{name} uses `{forbidden}`: checks are supervised in health/, the census is made in admin/"
            );
        }
    }
    assert_eq!(found, pure.len(), "the core's pure parts were not all read");
    let core = std::fs::read_to_string(publish.join("mod.rs")).expect("the run loop");
    let lines = core.lines().count();
    println!("publish/mod.rs: {lines} lines");
    assert!(
        lines <= 600,
        "publish/mod.rs has {lines} lines (at most 600)"
    );
}
