//! The reconcile pipeline for one CommunicationPattern:
//! observe → validate (pure) → build (pure) → apply → status.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use commlab_api::{CommunicationPattern, CommunicationPatternStatus, Phase};
use k8s_openapi::{api::core::v1::Secret, jiff::Timestamp};
use kube::{
    Api, Resource, ResourceExt,
    api::{Patch, PatchParams},
    core::DeserializeGuard,
    runtime::{
        controller::Action,
        events::{Event, EventType},
    },
};
use tracing::{instrument, warn};

use crate::{
    apply::{FIELD_MANAGER, Known, Owner, apply_all, apply_runner},
    cache,
    children::{self, BuildInputs, Names, PASSWORD_KEY},
    context::Context,
    error::{Error, Result},
    experiment::{self, ExperimentState, RunnerInputs, RunnerObjects},
    finalizer,
    status::{self, Observed, READY, SPEC_VALID},
    validate,
};

/// How often a settled object is looked at again even without a change,
/// so a missed watch event cannot leave it stale for long.
const RESYNC: Duration = Duration::from_secs(300);

pub async fn reconcile(
    guard: Arc<DeserializeGuard<CommunicationPattern>>,
    ctx: Arc<Context>,
) -> Result<Action> {
    let cp = match &guard.0 {
        Ok(cp) => cp,
        Err(invalid) => {
            // One malformed object must not stop the watch of all the others.
            warn!(name = ?invalid.metadata.name, error = %invalid.error, "skipping a CommunicationPattern that cannot be read");
            return Ok(Action::await_change());
        }
    };
    if !ctx.cache.is_ready() {
        // The caches are still being filled (the operator just started):
        // a miss would look like a missing Secret or Job.
        return Ok(Action::requeue(Duration::from_secs(1)));
    }
    let started = Instant::now();
    // Once it carries the finalizer; a pattern being deleted has its chaos
    // experiments deleted instead (see finalizer.rs).
    let result = finalizer::reconcile_with_finalizer(cp, &ctx, |cp| {
        let ctx = &ctx;
        async move { reconcile_one(&cp, ctx).await }
    })
    .await;
    ctx.metrics.observe(
        started.elapsed(),
        result.as_ref().err().map(Error::category),
    );
    finalizer::retry_failed_cleanup(result)
}

#[instrument(skip_all, fields(namespace = cp.namespace().unwrap_or_default(), name = cp.name_any()))]
async fn reconcile_one(cp: &CommunicationPattern, ctx: &Context) -> Result<Action> {
    let ns = cp
        .namespace()
        .ok_or(Error::MissingField("metadata.namespace"))?;
    let uid = cp.uid().ok_or(Error::MissingField("metadata.uid"))?;
    let names = Names::of(cp);
    let previous = cp.status.as_ref();

    // Validate (pure).
    let judgement = validate::judge(&cp.name_any(), &cp.spec);
    if !judgement.is_valid() {
        let status = status::compute(
            previous,
            cp.metadata.generation,
            &judgement,
            Vec::new(),
            Timestamp::now(),
        );
        if became(previous, &status, SPEC_VALID, "False") {
            ctx.event(
                cp,
                EventType::Warning,
                "InvalidSpec",
                "Validate",
                judgement.problems.join("; "),
            )
            .await;
        }
        write_status(ctx, cp, &ns, previous, status).await?;
        // Nothing will fix itself: wait for the user to change the spec.
        return Ok(Action::await_change());
    }

    // Observe: the database password, generated once and then kept.
    let password = database_password(ctx, &ns, &names.database_secret()).await?;

    // Build (pure) and apply.
    let desired = children::desired(
        cp,
        &BuildInputs {
            config: &ctx.config,
            database_password: &password,
        },
    );
    let owner = Owner {
        namespace: &ns,
        instance: &names.instance,
        uid: &uid,
    };
    let known = Known {
        client: &ctx.client,
        cache: &ctx.cache,
        last_applied: &ctx.last_applied,
    };
    let applied = apply_all(&known, &owner, desired).await?;

    // Status from what was applied.
    let components = status::components(&Observed {
        deployments: &applied.deployments,
        stateful_sets: &applied.stateful_sets,
    });
    let now = Timestamp::now();
    let status = status::compute(
        previous,
        cp.metadata.generation,
        &judgement,
        components,
        now,
    );

    // Experiment: a runner Job per generation, started once every component
    // is ready and kept (not restarted) while faults take components down.
    let generation = cp.metadata.generation.unwrap_or_default();
    let existing_job = cache::get(&ctx.cache.jobs, &ns, &names.experiment_job(generation));
    let ready = status
        .conditions
        .iter()
        .any(|c| c.type_ == READY && c.status == "True");
    let runner = if ready || existing_job.is_some() {
        let pod_labels = ctx.config.runner_pod_labels();
        let inputs = RunnerInputs {
            image: &ctx.config.workload_image,
            pod_labels: &pod_labels,
            chaos: &ctx.config.chaos,
        };
        experiment::runner_objects(cp, generation, &inputs, &children::child_meta(cp))
    } else {
        RunnerObjects::default()
    };
    let applied_jobs = apply_runner(&known, &owner, runner).await?;
    // The report is read from the cache: its watch triggers a reconcile
    // once the runner writes it.
    let report = cache::get(&ctx.cache.config_maps, &ns, &names.report());
    let state = experiment::observe(cp, generation, applied_jobs.first(), report.as_deref());
    let status = status::with_experiment(status, previous, &state, &names.report(), now);
    let previous_phase = previous.and_then(|p| p.phase);
    if became(previous, &status, status::EXPERIMENT_COMPLETE, "True") {
        let message = condition_message(&status, status::EXPERIMENT_COMPLETE);
        ctx.event(
            cp,
            EventType::Normal,
            "ExperimentComplete",
            "Experiment",
            message,
        )
        .await;
    } else if let ExperimentState::Failed { reason, message } = &state
        && previous_phase != Some(Phase::Failed)
    {
        ctx.event(
            cp,
            EventType::Warning,
            reason,
            "Experiment",
            message.clone(),
        )
        .await;
    } else if state == ExperimentState::Running && previous_phase != Some(Phase::Running) {
        let note = format!("runner Job {}", names.experiment_job(generation));
        ctx.event(
            cp,
            EventType::Normal,
            "ExperimentStarted",
            "Experiment",
            note,
        )
        .await;
    }
    if previous.is_none_or(|p| p.observed_generation != cp.metadata.generation) {
        for warning in &judgement.warnings {
            ctx.event(
                cp,
                EventType::Warning,
                "IgnoredSetting",
                "Validate",
                warning.clone(),
            )
            .await;
        }
    }
    if became(previous, &status, READY, "True") {
        ctx.event(
            cp,
            EventType::Normal,
            "ComponentsReady",
            "Deploy",
            "every component is ready".into(),
        )
        .await;
    } else if became(previous, &status, status::DEGRADED, "True") {
        let message = condition_message(&status, READY);
        ctx.event(
            cp,
            EventType::Warning,
            "ComponentFailing",
            "Deploy",
            message,
        )
        .await;
    }
    write_status(ctx, cp, &ns, previous, status).await?;
    Ok(Action::requeue(RESYNC))
}

/// Writes the status only when it changed, so a settled object costs no writes.
async fn write_status(
    ctx: &Context,
    cp: &CommunicationPattern,
    ns: &str,
    previous: Option<&CommunicationPatternStatus>,
    status: CommunicationPatternStatus,
) -> Result<()> {
    if previous == Some(&status) {
        return Ok(());
    }
    let api: Api<CommunicationPattern> = Api::namespaced(ctx.client.clone(), ns);
    let body = serde_json::json!({
        "apiVersion": CommunicationPattern::api_version(&()),
        "kind": CommunicationPattern::kind(&()),
        "status": status,
    });
    api.patch_status(
        &cp.name_any(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(body),
    )
    .await?;
    Ok(())
}

fn became(
    previous: Option<&CommunicationPatternStatus>,
    now: &CommunicationPatternStatus,
    type_: &str,
    value: &str,
) -> bool {
    let get = |s: &CommunicationPatternStatus| {
        s.conditions
            .iter()
            .find(|c| c.type_ == type_)
            .map(|c| c.status.clone())
    };
    get(now).as_deref() == Some(value) && previous.and_then(get).as_deref() != Some(value)
}

fn condition_message(status: &CommunicationPatternStatus, type_: &str) -> String {
    status
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| c.message.clone())
        .unwrap_or_default()
}

/// The database password in the pattern's Secret, or a new one for a new
/// Secret. A cache miss is checked with the API server before generating:
/// a Secret applied moments ago may not have reached the cache yet, and a
/// new password would lock the running database's clients out.
async fn database_password(ctx: &Context, ns: &str, name: &str) -> Result<String> {
    let secret = match cache::get(&ctx.cache.secrets, ns, name) {
        Some(cached) => Some(Secret::clone(&cached)),
        None => {
            let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), ns);
            secrets.get_opt(name).await?
        }
    };
    Ok(secret
        .and_then(|s| s.data)
        .and_then(|d| {
            d.get(PASSWORD_KEY)
                .map(|p| String::from_utf8_lossy(&p.0).into_owned())
        })
        .unwrap_or_else(generate_password))
}

fn generate_password() -> String {
    use rand::{Rng, distr::Alphanumeric};
    rand::rng()
        .sample_iter(&Alphanumeric)
        .take(32)
        .map(char::from)
        .collect()
}

pub fn error_policy(
    _guard: Arc<DeserializeGuard<CommunicationPattern>>,
    error: &Error,
    _ctx: Arc<Context>,
) -> Action {
    warn!(%error, category = error.category(), "reconcile failed; retrying");
    Action::requeue(Duration::from_secs(5))
}

impl Context {
    /// Records an Event; a failure to record is logged, never fatal.
    async fn event(
        &self,
        cp: &CommunicationPattern,
        type_: EventType,
        reason: &str,
        action: &str,
        note: String,
    ) {
        let event = Event {
            type_,
            reason: reason.into(),
            note: Some(note),
            action: action.into(),
            secondary: None,
        };
        if let Err(error) = self.recorder.publish(&event, &cp.object_ref(&())).await {
            warn!(%error, "could not record an event");
        }
    }
}
