//! `cargo run -p capstan-render --example render -- PATH [plain|kustomize|helm|jsonnet] [yaml|json]`: what
//! `capstan render` prints, without the CLI.

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let path = args.next().unwrap_or_else(|| ".".into());
    let renderer = match args.next().as_deref() {
        None | Some("auto") => None,
        Some(name) => Some(name.parse::<capstan_render::RendererKind>()?),
    };
    let format = match args.next().as_deref() {
        Some("json") => capstan_render::OutputFormat::Json,
        _ => capstan_render::OutputFormat::Yaml,
    };
    let options = capstan_render::RenderOptions {
        renderer,
        ..Default::default()
    };
    print!(
        "{}",
        capstan_render::render_command(std::path::Path::new(&path), &options, format)?
    );
    Ok(())
}
