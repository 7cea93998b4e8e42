//! `#[func]`, the attribute of the `functions-guest` crate (use it from there). Written against
//! `proc_macro` alone, so that Debian's rustc 1.63 builds it without registry crates.

// Named here, as cargo would pass it, so that a plain `rustc --crate-type proc-macro` builds it too.
extern crate proc_macro;

use proc_macro::Delimiter;
use proc_macro::Spacing;
use proc_macro::TokenStream;
use proc_macro::TokenTree;

/// Makes a plain function the whole WebAssembly function: the JSON event becomes its arguments
/// and its return value the JSON response. See the `functions-guest` crate.
#[proc_macro_attribute]
pub fn func(attr: TokenStream, item: TokenStream) -> TokenStream {
    let expansion = if attr.is_empty() {
        signature(item.clone()).map(|(name, params)| entry(&name, &params))
    } else {
        Err("#[func] takes no arguments".to_owned())
    };
    let generated = match expansion {
        Ok(code) => code,
        Err(message) => format!("::core::compile_error!({message:?});"),
    };
    let mut out = item;
    out.extend(
        generated
            .parse::<TokenStream>()
            .expect("#[func] generates valid Rust"),
    );
    out
}

/// The name and parameter names of the `fn` item `item`.
fn signature(item: TokenStream) -> Result<(String, Vec<String>), String> {
    let mut tokens = item.into_iter().peekable();
    // Attributes, visibility and qualifiers, up to `fn`.
    loop {
        match tokens.next() {
            Some(TokenTree::Ident(ident)) if ident.to_string() == "fn" => break,
            Some(TokenTree::Ident(ident)) if ident.to_string() == "async" => {
                return Err("#[func] cannot be async: write a plain fn".into())
            }
            Some(_) => {}
            None => return Err("#[func] applies to a fn".into()),
        }
    }
    let name = match tokens.next() {
        Some(TokenTree::Ident(ident)) => ident.to_string(),
        _ => return Err("#[func] applies to a fn".into()),
    };
    if name == "main" {
        return Err("#[func] supplies main itself: give the function another name".into());
    }
    let params = match tokens.next() {
        Some(TokenTree::Group(group)) if group.delimiter() == Delimiter::Parenthesis => {
            group.stream()
        }
        Some(TokenTree::Punct(punct)) if punct.as_char() == '<' => {
            return Err("a #[func] cannot be generic: give its parameters concrete types".into())
        }
        _ => return Err("#[func] applies to a fn".into()),
    };
    parameter_names(params).map(|names| (name, names))
}

/// Each parameter's name: the parameters are split at the commas outside `<...>`, and each must
/// be `name: Type` or `mut name: Type`.
fn parameter_names(params: TokenStream) -> Result<Vec<String>, String> {
    let mut names = Vec::new();
    let mut current: Vec<TokenTree> = Vec::new();
    let mut angle_depth = 0usize;
    let mut after_dash = false;
    let mut tokens = params.into_iter().peekable();
    loop {
        let token = tokens.next();
        let at_end = match &token {
            None => true,
            Some(TokenTree::Punct(punct)) => {
                let c = punct.as_char();
                let is_arrow = c == '>' && after_dash;
                after_dash = c == '-' && punct.spacing() == Spacing::Joint;
                match c {
                    '<' => angle_depth += 1,
                    '>' if !is_arrow => angle_depth = angle_depth.saturating_sub(1),
                    ',' if angle_depth == 0 => {}
                    _ => {}
                }
                c == ',' && angle_depth == 0
            }
            Some(_) => {
                after_dash = false;
                false
            }
        };
        if at_end {
            if !current.is_empty() {
                names.push(parameter_name(&current)?);
                current.clear();
            }
            if token.is_none() {
                return Ok(names);
            }
        } else if let Some(token) = token {
            current.push(token);
        }
    }
}

fn parameter_name(param: &[TokenTree]) -> Result<String, String> {
    let text: Vec<String> = param.iter().map(ToString::to_string).collect();
    let pattern = match text.iter().position(|t| t == ":") {
        Some(colon) => &text[..colon],
        None => &text[..],
    };
    let name = match pattern {
        [name] => name,
        [mutable, name] if mutable == "mut" => name,
        _ => {
            return Err(format!(
                "#[func] parameters are plain names, not `{}`",
                pattern.join(" ")
            ))
        }
    };
    let name = name.trim_start_matches("r#");
    if name == "self" {
        Err("a #[func] is a free function, not a method".into())
    } else if name.chars().all(|c| c == '_' || c.is_alphanumeric()) {
        Ok(name.to_owned())
    } else {
        Err(format!("#[func] parameters are plain names, not `{name}`"))
    }
}

/// The generated entry point: `__func_NAME(event) -> Outcome`, and `main` calling it.
fn entry(name: &str, params: &[String]) -> String {
    let names: Vec<String> = params.iter().map(|p| format!("{p:?}")).collect();
    let args: Vec<String> = (0..params.len())
        .map(|i| format!("__args.take({i})?"))
        .collect();
    format!(
        "#[doc(hidden)]
        pub fn __func_{name}(event: &[u8]) -> ::functions_guest::__private::Outcome {{
            ::functions_guest::__private::call(event, &[{names}], |__args| {{
                ::functions_guest::__private::output({name}({args}))
            }})
        }}

        #[allow(dead_code)]
        fn main() {{
            ::functions_guest::__private::main(__func_{name})
        }}",
        names = names.join(", "),
        args = args.join(", "),
    )
}
