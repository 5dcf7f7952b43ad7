//! `salvage cron …` and `salvage cron-secret …`: the terminal's doors into the cron plane.

use app::auth::ssr::Actor;
use app::format::format_utc;

use super::args::{CronCommand, CronSecretCommand};
use super::common::{app_error, cli_firing, current_state, print_json, stop_on_ctrl_c};
use crate::config::Settings;

fn duration(ms: Option<i64>) -> String {
    ms.map(app::format::format_duration)
        .unwrap_or_else(|| "-".into())
}

/// `salvage cron list`'s table.
fn print_jobs(jobs: &[app::crons::JobStatus]) {
    println!(
        "{:<18} {:<20} {:>5} {:>8} {:>6} {:>6}  {:<20} {:<20} {:>9} {:>9}  FLAGS",
        "JOB",
        "SCHEDULE",
        "RUNS",
        "EXPECTED",
        "MISSED",
        "RATE",
        "LAST RUN (UTC)",
        "LAST SUCCESS (UTC)",
        "TYPICAL",
        "LONGEST"
    );
    for job in jobs {
        println!(
            "{:<18} {:<20} {:>5} {:>8} {:>6} {:>6}  {:<20} {:<20} {:>9} {:>9}  {}",
            job.name,
            job.schedule_text,
            job.runs,
            job.expected,
            job.missed,
            job.fire_rate
                .map(|r| format!("{r:.0}%"))
                .unwrap_or_else(|| "-".into()),
            job.last_run
                .as_ref()
                .map(|r| format_utc(r.ran_at))
                .unwrap_or_else(|| "never".into()),
            job.last_success_at
                .map(format_utc)
                .unwrap_or_else(|| "never".into()),
            duration(job.typical_ms),
            duration(job.longest_ms),
            job.flags
                .iter()
                .map(|f| f.label())
                .collect::<Vec<_>>()
                .join(", "),
        );
    }
}

pub async fn cron(command: CronCommand, settings: Settings) -> anyhow::Result<()> {
    let state = current_state(&settings).await?;
    match command {
        CronCommand::List(output) => {
            crate::startup::after_postgres_migrated(&state, None).await?;
            let jobs = app::crons::ssr::status::job_statuses(&state, state.clock.now()).await?;
            let flagged = jobs.iter().filter(|job| job.flagged()).count();
            if output.json {
                print_json(&jobs)?;
            } else {
                print_jobs(&jobs);
            }
            if flagged > 0 {
                anyhow::bail!("{flagged} job(s) flagged");
            }
            Ok(())
        }
        CronCommand::Run { job, reason } => {
            let Some(found) = app::jobs::ssr::find(state.jobs(), &job) else {
                anyhow::bail!(
                    "no job named `{job}`; the jobs are: {}",
                    app::jobs::ssr::names(state.jobs())
                );
            };
            stop_on_ctrl_c(&state, "Stopping after the current step…");
            let finished =
                app::jobs::ssr::run(&state, found, cli_firing(reason), Default::default())
                    .await
                    .map_err(app_error)?
                    .ok_or_else(|| anyhow::anyhow!("a run without a tick always starts"))?;
            println!(
                "{} run #{}: {}, {} rows, {}.",
                found.name,
                finished.run_id,
                finished.status,
                finished.rows,
                duration(Some(finished.duration_ms))
            );
            match finished.error {
                Some(error) => anyhow::bail!("{}: {error}", found.name),
                None => Ok(()),
            }
        }
    }
}

pub async fn cron_secret(command: CronSecretCommand, settings: Settings) -> anyhow::Result<()> {
    use app::crons::ssr::secrets;
    let state = current_state(&settings).await?;
    let actor = Actor::cli();
    let now = state.clock.now();
    match command {
        CronSecretCommand::Rotate {
            grace_hours,
            reason,
        } => {
            let rotated = secrets::rotate(&state.pg, &actor, "cli", grace_hours, reason, now)
                .await
                .map_err(app_error)?;
            eprintln!(
                "Cron secret #{} is current. Copy it now; it is not shown again:",
                rotated.id
            );
            println!("{}", rotated.secret.reveal());
            if let Some((previous, until)) = rotated.previous {
                eprintln!(
                    "Secret #{previous} keeps working until {}. Each scheduler sends:\n  Authorization: Bearer <the secret above>",
                    format_utc(until)
                );
            }
            Ok(())
        }
        CronSecretCommand::EndGrace { id, reason } => {
            secrets::end_grace(&state.pg, &actor, id, Some(reason), now)
                .await
                .map_err(app_error)?;
            println!("Cron secret #{id} no longer works.");
            Ok(())
        }
        CronSecretCommand::List(output) => {
            let list = secrets::list(&state.pg, now).await?;
            if output.json {
                return print_json(&list.secrets);
            }
            println!(
                "{:<5} {:<9} {:<20} {:<20} {:<20} LAST CALLER",
                "ID", "STATE", "CREATED (UTC)", "STOPS (UTC)", "LAST USED (UTC)"
            );
            for s in list.secrets {
                let state = match s.expires_at {
                    None => "current",
                    Some(at) if at > list.now => "grace",
                    Some(_) => "expired",
                };
                println!(
                    "{:<5} {:<9} {:<20} {:<20} {:<20} {}",
                    s.id,
                    state,
                    format_utc(s.created_at),
                    s.expires_at.map(format_utc).unwrap_or_else(|| "-".into()),
                    s.last_used_at
                        .map(format_utc)
                        .unwrap_or_else(|| "never".into()),
                    match (&s.last_used_agent, &s.last_used_addr) {
                        (None, None) => "-".to_owned(),
                        (agent, addr) => format!(
                            "{} from {}",
                            agent.as_deref().unwrap_or("?"),
                            addr.as_deref().unwrap_or("?")
                        ),
                    }
                );
            }
            Ok(())
        }
    }
}
