//! `cloudctl events watch`: follows the event stream until interrupted, resuming after the
//! last revision seen when the connection drops.

use std::time::Duration;

use andromede_api::v1::{Event, WatchRequest};
use anyhow::Result;

use crate::cli::EventsCmd;
use crate::client::{is_transient, Ctx};
use crate::errors::code_words;
use crate::output::{emit, strip_secrets_from_json, to_named_value, Kind, OutputFormat};
use crate::views::event_line;

const MAX_BACKOFF: Duration = Duration::from_secs(5);

pub async fn run(ctx: &Ctx, cmd: EventsCmd) -> Result<()> {
    let EventsCmd::Watch {
        from_revision,
        kind,
        project,
    } = cmd;
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);

    let mut after = from_revision;
    let mut backoff = Duration::from_millis(500);
    loop {
        let req = WatchRequest {
            from_revision: after,
            kinds: kind.clone(),
            project: project.clone().unwrap_or_default(),
        };
        let mut client = ctx.events();
        let opened = tokio::select! {
            _ = &mut ctrl_c => return Ok(()),
            r = client.watch(req) => r,
        };
        let why = match opened {
            Err(s) if is_transient(&s) => format!("{}: {}", code_words(s.code()), s.message()),
            Err(s) => return Err(s.into()),
            Ok(resp) => {
                let mut stream = resp.into_inner();
                loop {
                    let next = tokio::select! {
                        _ = &mut ctrl_c => return Ok(()),
                        n = stream.message() => n,
                    };
                    match next {
                        Ok(Some(ev)) => {
                            after = after.max(ev.revision);
                            backoff = Duration::from_millis(500);
                            print_event(ctx.output, &ev)?;
                        }
                        Ok(None) => break "the server ended the stream".to_owned(),
                        Err(s) if is_transient(&s) => {
                            break format!("{}: {}", code_words(s.code()), s.message())
                        }
                        Err(s) => return Err(s.into()),
                    }
                }
            }
        };
        eprintln!("warning: watch interrupted ({why}); resuming after revision {after}");
        tokio::select! {
            _ = &mut ctrl_c => return Ok(()),
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

fn print_event(format: OutputFormat, ev: &Event) -> Result<()> {
    if format == OutputFormat::Table {
        return emit(&event_line(ev));
    }
    // Host and join token events carry the full resource, hashes of credentials included.
    let shown = Event {
        resource_json: strip_secrets_from_json(&ev.resource_json),
        ..ev.clone()
    };
    let value = to_named_value(&shown, Kind::Event)?;
    match format {
        OutputFormat::Yaml => emit(&format!("---\n{}", serde_yaml::to_string(&value)?)),
        _ => emit(&serde_json::to_string(&value)?),
    }
}
