//! `scoutstream`: a thin binary; the work lives in the library.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use scoutstream::app::{self, AppConfig, GroupName};
use scoutstream::embedded::{self, EmbeddedOptions};
use scoutstream::groups;
use scoutstream::operate;
use scoutstream::produce::{self, ProduceOptions};
use scoutstream::schema_cmd;
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(
    name = "scoutstream",
    version,
    about = "The event backbone of a Dota 2 scouting product"
)]
struct Cli {
    /// Log as JSON lines instead of human-readable text.
    #[arg(long, global = true, env = "SCOUTSTREAM_LOG_JSON")]
    log_json: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the whole pipeline in this process on the embedded default (in-memory
    /// bus, SQLite, in-process cache when no Redis answers) over the real data in
    /// ../shared/data and any files you name, then report. The default command.
    Embedded {
        /// JSON documents or JSON-lines files of matches and player records.
        files: Vec<PathBuf>,
        /// Folders to ingest (default: the shared OpenDota fixtures).
        #[arg(long = "data-dir")]
        data_dirs: Vec<PathBuf>,
        /// SQLite database the persist group writes.
        #[arg(long, default_value = "sqlite://scoutstream.db?mode=rwc")]
        database: String,
        /// Generated matches to run through the pipeline too.
        #[arg(long, default_value_t = 0)]
        generate: usize,
    },
    /// Run consumer groups against the configured bus and stores until SIGINT/SIGTERM.
    Run {
        /// TOML config file; `SCOUTSTREAM__SECTION__KEY` variables override it.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Groups to run (default: those in the config, or all).
        #[arg(long, value_delimiter = ',')]
        groups: Vec<GroupName>,
    },
    /// Publish real-data files and/or generated matches to the configured bus.
    Produce {
        #[arg(long, short)]
        config: Option<PathBuf>,
        files: Vec<PathBuf>,
        /// Generated matches to publish too.
        #[arg(long, default_value_t = 0)]
        generate: usize,
        #[arg(long, default_value_t = 7)]
        seed: u64,
        /// Publish JSON instead of Avro (what any client can write).
        #[arg(long)]
        json: bool,
    },
    /// Run the whole pipeline on N generated matches and print throughput, CPU,
    /// latency and memory beside raw baselines measured in the same run.
    Bench(scoutstream::bench::BenchArgs),
    /// Move a consumer group to the earliest or latest record, or to a time, so it
    /// processes again (or skips) what is on its topics. Stop the group first.
    Replay {
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// The group to move.
        #[arg(long)]
        group: GroupName,
        /// `earliest`, `latest`, unix milliseconds, or a time ago like `-2h`.
        #[arg(long)]
        to: String,
        /// Only this topic (default: every topic of the group).
        #[arg(long)]
        topic: Option<String>,
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
    },
    /// Work the dead-letter topic.
    Dlq {
        #[arg(long, short, global = true)]
        config: Option<PathBuf>,
        #[command(subcommand)]
        action: DlqAction,
    },
    /// Create or upgrade the database schema as `database.migrate_url`'s role, and
    /// grant `database.app_role` the rights the groups need (the groups also
    /// migrate at start unless `database.migrate_on_start` is off).
    Migrate {
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Print each group's lag per topic and partition, in messages and seconds.
    Lag {
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Check schema compatibility, or register the schemas with the registry.
    Schemas {
        #[arg(long, short, global = true)]
        config: Option<PathBuf>,
        #[command(subcommand)]
        action: SchemasAction,
    },
}

#[derive(Subcommand)]
enum SchemasAction {
    /// Fail unless every schema reads the data of the versions before it: those
    /// kept under schemas/avro/v1/ and, with a registry, the latest registered.
    Check {
        /// Only the versions kept in the repo, even with a registry configured.
        #[arg(long)]
        offline: bool,
    },
    /// Register every schema under its topic's subject (`<topic>-value`) and
    /// set the subject's compatibility rule to BACKWARD.
    Register,
}

#[derive(Subcommand)]
enum DlqAction {
    /// One line per dead letter: topic, error kind, source position, attempts, error.
    List,
    /// Everything about one dead letter (its number from `list`), original decoded.
    Inspect { index: usize },
    /// Re-publish dead letters' original events to their topics, after a fix.
    Replay {
        /// Only letters of this error kind (e.g. `decode`, `database`).
        #[arg(long)]
        kind: Option<String>,
        #[arg(long)]
        yes: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logs(cli.log_json);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(err) => return fail(&anyhow::anyhow!(err)),
    };
    match runtime.block_on(dispatch(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => fail(&err),
    }
}

fn fail(err: &anyhow::Error) -> ExitCode {
    eprintln!("error: {err:#}");
    // 2: the configuration is wrong (fix it and start again); 1: anything else.
    if err
        .downcast_ref::<pipeline::config::ConfigError>()
        .is_some()
    {
        ExitCode::from(2)
    } else {
        ExitCode::from(1)
    }
}

async fn dispatch(command: Option<Command>) -> anyhow::Result<()> {
    let shutdown = shutdown_on_signal();
    let command = command.unwrap_or(Command::Embedded {
        files: Vec::new(),
        data_dirs: Vec::new(),
        database: "sqlite://scoutstream.db?mode=rwc".into(),
        generate: 0,
    });
    match command {
        Command::Embedded {
            files,
            mut data_dirs,
            database,
            generate,
        } => {
            if data_dirs.is_empty() && files.is_empty() {
                data_dirs.push(producers::ingest::shared_data_dir().join("opendota"));
            }
            let report = embedded::run(
                EmbeddedOptions {
                    data_dirs,
                    files,
                    database_url: database,
                    generate,
                },
                shutdown,
            )
            .await?;
            print!("{}", report.render());
        }
        Command::Run {
            config,
            groups: chosen,
        } => {
            let mut config = AppConfig::load(config.as_deref())?;
            if !chosen.is_empty() {
                config.groups.enabled = chosen;
            }
            config.validate_api_exposure()?;
            let bus = config.bus.connect().await?;
            app::ensure_topics(bus.as_ref(), &config).await?;
            let resources = groups::Resources::default();
            let api = if config.serves_api() {
                groups::jobs_api(&config, &bus, &resources).await?
            } else {
                axum::Router::new()
            };
            let readiness =
                app::start_observability(&config.observe, api, shutdown.clone()).await?;
            let specs = groups::build(&config, bus.clone(), &resources).await?;
            pipeline::observe::spawn_health_checks(
                readiness.clone(),
                resources.health_checks(&bus),
                pipeline::observe::health::DEFAULT_EVERY,
                shutdown.clone(),
            );
            let watch = app::Watch {
                readiness: Some(readiness),
                lag_every: Some(Duration::from_secs(
                    config.groups.lag_report_interval_secs.max(1),
                )),
            };
            let stats = app::run_groups(bus, config.runner.clone(), specs, watch, shutdown).await?;
            for (name, stats) in stats {
                println!(
                    "group {}: handled {}, dead-lettered {}, retries {}",
                    name.as_str(),
                    stats.handled,
                    stats.dead_lettered,
                    stats.retries
                );
            }
        }
        Command::Produce {
            config,
            files,
            generate,
            seed,
            json,
        } => {
            let config = AppConfig::load(config.as_deref())?;
            let bus = config.bus.connect().await?;
            app::ensure_topics(bus.as_ref(), &config).await?;
            let report = produce::run(
                bus.as_ref(),
                ProduceOptions {
                    files,
                    generate,
                    seed,
                    json,
                    registry: config.schema_registry.clone(),
                    topic_prefix: config.bus.topic_prefix.clone(),
                },
            )
            .await?;
            print!("{}", report.render());
        }
        Command::Bench(args) => scoutstream::bench::command(args).await?,
        Command::Replay {
            config,
            group,
            to,
            topic,
            yes,
        } => {
            let config = AppConfig::load(config.as_deref())?;
            let to = operate::parse_reset_to(&to, pipeline::bus::now_ms())?;
            let id = config.group_id(group);
            let topics_in = topic.map_or_else(|| group.topics(), |t| vec![t]);
            confirm(
                yes,
                &format!(
                    "Move group `{id}` on {topics_in:?} to {to:?}? Its members must be stopped."
                ),
            )?;
            let bus = config.bus.connect().await?;
            let moved = operate::replay(bus.as_ref(), &id, &topics_in, to).await?;
            for moved in &moved {
                println!(
                    "{id} {} partition {} -> {}",
                    moved.topic, moved.partition, moved.position
                );
            }
            if group == GroupName::Persist {
                operate::move_persist_positions(&config.database.url, &id, &moved).await?;
                println!("{id} database positions moved with the bus positions");
            }
        }
        Command::Dlq { config, action } => {
            let config = AppConfig::load(config.as_deref())?;
            let bus = config.bus.connect().await?;
            let topic = config.runner.dead_letter_topic.clone();
            match action {
                DlqAction::List => print!(
                    "{}",
                    operate::render_list(&operate::read_all(bus.as_ref(), &topic).await?)
                ),
                DlqAction::Inspect { index } => {
                    let letters = operate::read_all(bus.as_ref(), &topic).await?;
                    let letter = letters.get(index).ok_or_else(|| {
                        anyhow::anyhow!("no dead letter #{index}: there are {}", letters.len())
                    })?;
                    let original = letter.letter.as_ref().map(|l| &l.original[..]);
                    let codec =
                        schema_cmd::codec_for(&config, &original.into_iter().collect::<Vec<_>>())
                            .await?;
                    print!("{}", operate::render_inspect(letter, &codec));
                }
                DlqAction::Replay { kind, yes } => {
                    confirm(
                        yes,
                        &format!(
                            "Re-publish dead letters{} to their topics?",
                            kind.as_deref()
                                .map(|k| format!(" of kind `{k}`"))
                                .unwrap_or_default()
                        ),
                    )?;
                    let group = format!("{}-dlq-replay", config.groups.id_prefix);
                    let outcome =
                        operate::replay_dead_letters(bus.as_ref(), &topic, &group, kind.as_deref())
                            .await?;
                    println!(
                        "replayed {} dead letters, passed over {}",
                        outcome.replayed, outcome.passed_over
                    );
                }
            }
        }
        Command::Schemas { config, action } => {
            let config = AppConfig::load(config.as_deref())?;
            match action {
                SchemasAction::Check { offline } => {
                    let report = schema_cmd::check(&config, offline).await?;
                    print!("{}", report.render());
                    anyhow::ensure!(
                        report.failures() == 0,
                        "{} schema(s) cannot read earlier data",
                        report.failures()
                    );
                }
                SchemasAction::Register => {
                    for (subject, id) in schema_cmd::register(&config).await? {
                        println!(
                            "{subject}: id {id}, compatibility {}",
                            schema_cmd::COMPATIBILITY
                        );
                    }
                }
            }
        }
        Command::Migrate { config } => {
            let config = AppConfig::load(config.as_deref())?;
            let store =
                consumers::persist::Store::connect(config.database.migrations_url()).await?;
            println!("schema of the {} database is up to date", store.backend());
            let role = &config.database.app_role;
            if !role.is_empty() {
                store.grant_rows_to(role).await?;
                println!("role {role} may read and write rows, and change nothing else");
            }
            store.close().await;
        }
        Command::Lag { config } => {
            let config = AppConfig::load(config.as_deref())?;
            let bus = config.bus.connect().await?;
            println!(
                "{:<24} {:<18} {:>9} {:>10} {:>10}",
                "group", "topic", "partition", "messages", "seconds"
            );
            for group in &config.groups.enabled {
                for lag in bus.lag(&config.group_id(*group), &group.topics()).await? {
                    println!(
                        "{:<24} {:<18} {:>9} {:>10} {:>10.1}",
                        config.group_id(*group),
                        lag.topic,
                        lag.partition,
                        lag.messages,
                        lag.seconds
                    );
                }
            }
        }
    }
    Ok(())
}

/// Asks on the terminal unless `--yes`; without a terminal the answer is no.
fn confirm(yes: bool, question: &str) -> anyhow::Result<()> {
    if yes {
        return Ok(());
    }
    eprint!("{question} Type `yes` to go on: ");
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer)?;
    if answer.trim() != "yes" {
        anyhow::bail!("not confirmed; nothing changed (pass --yes to skip the question)");
    }
    Ok(())
}

fn init_logs(json: bool) {
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// Cancels the returned token on SIGINT or SIGTERM: runners drain and commit.
fn shutdown_on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutdown requested; draining");
        cancel.cancel();
    });
    token
}

#[cfg(unix)]
async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[cfg(not(unix))]
async fn wait_for_signal() {
    let _ = tokio::signal::ctrl_c().await;
}
