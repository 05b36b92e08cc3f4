//! The real operator binary against the real control plane (kwok plays the
//! kubelet, so pods become Running and Ready without containers).
//!
//! Each test runs its own operator process, scoped to the test's namespace,
//! so tests cannot see each other's objects. Needs a running cluster:
//! `export COMMLAB_KUBECONFIG=$(e2e/cluster/up.sh)`.

#[allow(dead_code)] // each test binary uses part of the helpers
mod support;

use std::time::Duration;

use anyhow::{Context as _, ensure};
use commlab_api::{
    Axis, CommunicationPattern, Pattern, PatternComparison, PatternComparisonStatus, Phase,
    results::ClaimVerdict,
};
use commlab_e2e::{
    player::{Outcome, PlayerConfig, RunnerPlayer},
    poll_until, with_temp_namespace,
};
use commlab_workload::report::{PatternReport, Report, claim_ids, mean_score, score_on};
use k8s_openapi::api::{
    apps::v1::{Deployment, StatefulSet},
    core::v1::{ConfigMap, Service},
};
use kube::{
    Api,
    api::{DeleteParams, ListParams, Patch, PatchParams},
};
use serde_json::json;
use support::{Operator, apply_manifest, install_crds, owned_resource_versions, wait_ready};

const READY_TIMEOUT: Duration = Duration::from_secs(90);

#[tokio::test]
async fn every_example_reaches_ready_with_every_component_ready() -> anyhow::Result<()> {
    with_temp_namespace(|client, ns| async move {
        install_crds(&client).await?;
        let _operator = Operator::start_admin(&ns).await?;
        let mut names = Vec::new();
        for example in support::pattern_examples()? {
            names.push(apply_manifest(&client, &ns, &example).await?);
        }
        ensure!(
            names.len() == 6,
            "expected one example per pattern, found {names:?}"
        );
        for name in &names {
            let cp = wait_ready(&client, &ns, name, READY_TIMEOUT).await?;
            let status = cp.status.context("a Ready object has a status")?;
            ensure!(
                status.components.len() >= 3,
                "{name}: components {:?}",
                status.components
            );
            for c in &status.components {
                let (ready, desired) = c.ready.split_once('/').context("ready is N/M")?;
                ensure!(
                    ready == desired,
                    "{name}: component {} is {}",
                    c.name,
                    c.ready
                );
            }
            let with_broker = cp.spec.pattern.needs_broker();
            ensure!(
                status.components.iter().any(|c| c.name == "broker") == with_broker,
                "{name}: broker listed = {}, pattern needs one = {with_broker}",
                !with_broker
            );
        }
        Ok(())
    })
    .await
}

#[tokio::test]
async fn replicas_and_pattern_changes_are_applied_and_deletion_collects_children()
-> anyhow::Result<()> {
    with_temp_namespace(|client, ns| async move {
        install_crds(&client).await?;
        let _operator = Operator::start_admin(&ns).await?;
        let patterns: Api<CommunicationPattern> = Api::namespaced(client.clone(), &ns);
        let name = apply_manifest(&client, &ns, &support::example("async-messaging.yaml")?).await?;
        wait_ready(&client, &ns, &name, READY_TIMEOUT).await?;
        let stateful_sets: Api<StatefulSet> = Api::namespaced(client.clone(), &ns);
        ensure!(
            stateful_sets
                .get_opt(&format!("{name}-broker"))
                .await?
                .is_some(),
            "AsyncMessaging deploys a broker"
        );

        let merge = |patch| Patch::Merge(patch);
        patterns
            .patch(
                &name,
                &PatchParams::default(),
                &merge(json!({"spec": {"components": {"replicas": {"orders": 3}}}})),
            )
            .await?;
        let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
        let orders = format!("{name}-orders");
        poll_until(READY_TIMEOUT, "orders scaled to 3", || async {
            let d = deployments.get(&orders).await?;
            Ok((d.spec.and_then(|s| s.replicas) == Some(3)).then_some(()))
        })
        .await?;

        // Someone else's edit of a child is undone, and a child deleted by
        // someone else comes back: the operator skips applying children it
        // knows to be current, and this is how it knows they are not.
        deployments
            .patch(
                &orders,
                &PatchParams::default(),
                &merge(json!({"spec": {"replicas": 7}})),
            )
            .await?;
        poll_until(READY_TIMEOUT, "orders scaled back to 3", || async {
            let d = deployments.get(&orders).await?;
            Ok((d.spec.and_then(|s| s.replicas) == Some(3)).then_some(()))
        })
        .await?;
        let services: Api<Service> = Api::namespaced(client.clone(), &ns);
        let catalog = format!("{name}-catalog");
        let deleted_uid = services.get(&catalog).await?.metadata.uid;
        services.delete(&catalog, &DeleteParams::default()).await?;
        poll_until(
            READY_TIMEOUT,
            "the catalog Service to come back",
            || async {
                let uid = services
                    .get_opt(&catalog)
                    .await?
                    .and_then(|s| s.metadata.uid);
                Ok((uid.is_some() && uid != deleted_uid).then_some(()))
            },
        )
        .await?;

        patterns
            .patch(
                &name,
                &PatchParams::default(),
                &merge(json!({"spec": {"pattern": "DirectApiCall", "chaos": null}})),
            )
            .await?;
        let broker = format!("{name}-broker");
        poll_until(
            READY_TIMEOUT,
            "the broker to be deleted after switching to DirectApiCall",
            || async {
                Ok(stateful_sets
                    .get_opt(&broker)
                    .await?
                    .is_none()
                    .then_some(()))
            },
        )
        .await?;
        wait_ready(&client, &ns, &name, READY_TIMEOUT).await?;

        patterns.delete(&name, &DeleteParams::foreground()).await?;
        poll_until(
            READY_TIMEOUT,
            "every child to be garbage-collected",
            || async {
                Ok(owned_resource_versions(&client, &ns, &name)
                    .await?
                    .is_empty()
                    .then_some(()))
            },
        )
        .await?;
        Ok(())
    })
    .await
}

#[tokio::test]
async fn an_invalid_spec_is_reported_once_without_a_hot_loop() -> anyhow::Result<()> {
    with_temp_namespace(|client, ns| async move {
        install_crds(&client).await?;
        let operator = Operator::start_admin(&ns).await?;
        let patterns: Api<CommunicationPattern> = Api::namespaced(client.clone(), &ns);
        let manifest = json!({
            "apiVersion": "commlab.dev/v1alpha1", "kind": "CommunicationPattern",
            "metadata": { "name": "redis-cache" },
            "spec": { "pattern": "CacheWithUpdateEvents", "components": { "cache": { "kind": "Redis" } } }
        });
        patterns.create(&Default::default(), &serde_json::from_value(manifest)?).await?;
        let cp = poll_until(READY_TIMEOUT, "SpecValid=False", || async {
            let cp = patterns.get("redis-cache").await?;
            let invalid = cp.status.as_ref().is_some_and(|s| s.conditions.iter().any(|c| c.type_ == "SpecValid" && c.status == "False"));
            Ok(invalid.then_some(cp))
        })
        .await?;
        let condition = cp.status.as_ref().unwrap().conditions.iter().find(|c| c.type_ == "SpecValid").unwrap().clone();
        ensure!(condition.message.contains("spec.components.cache.kind") && condition.message.contains("Redis"), "message: {}", condition.message);
        ensure!(owned_resource_versions(&client, &ns, "redis-cache").await?.is_empty(), "nothing is deployed for an invalid spec");

        let version_before = cp.metadata.resource_version.clone();
        let reconciles_before = operator.reconciles().await?;
        tokio::time::sleep(Duration::from_secs(20)).await;
        let reconciles_after = operator.reconciles().await?;
        let version_after = patterns.get("redis-cache").await?.metadata.resource_version;
        ensure!(version_before == version_after, "an invalid spec must not be rewritten: {version_before:?} → {version_after:?}");
        ensure!(reconciles_after - reconciles_before <= 1, "{} reconciles in 20 s for an unchanged invalid spec", reconciles_after - reconciles_before);

        // The user's fix is picked up at once.
        patterns.patch("redis-cache", &PatchParams::default(), &Patch::Merge(json!({"spec": {"components": {"cache": {"kind": "InProcess"}}}}))).await?;
        wait_ready(&client, &ns, "redis-cache", READY_TIMEOUT).await?;
        Ok(())
    })
    .await
}

#[tokio::test]
async fn a_settled_object_costs_no_writes_even_across_an_operator_restart() -> anyhow::Result<()> {
    with_temp_namespace(|client, ns| async move {
        install_crds(&client).await?;
        let operator = Operator::start_admin(&ns).await?;
        let name = apply_manifest(
            &client,
            &ns,
            &support::example("cache-with-update-events.yaml")?,
        )
        .await?;
        wait_ready(&client, &ns, &name, READY_TIMEOUT).await?;
        // kwok completes the runner Job's pod, so the experiment ends (without
        // a report); after that nothing should change any more.
        support::wait_experiment_settled(&client, &ns, &name, READY_TIMEOUT).await?;
        tokio::time::sleep(Duration::from_secs(3)).await;
        let before = owned_resource_versions(&client, &ns, &name).await?;
        let patterns: Api<CommunicationPattern> = Api::namespaced(client.clone(), &ns);
        let cp_before = patterns.get(&name).await?.metadata.resource_version;

        drop(operator);
        let _restarted = Operator::start_admin(&ns).await?;
        tokio::time::sleep(Duration::from_secs(8)).await;

        let after = owned_resource_versions(&client, &ns, &name).await?;
        ensure!(
            before == after,
            "children changed after a restart:\nbefore {before:#?}\nafter {after:#?}"
        );
        let cp_after = patterns.get(&name).await?.metadata.resource_version;
        ensure!(
            cp_before == cp_after,
            "status was rewritten without a change: {cp_before:?} → {cp_after:?}"
        );
        Ok(())
    })
    .await
}

#[tokio::test]
async fn the_charts_rbac_is_enough_to_reach_ready_and_start_the_runner() -> anyhow::Result<()> {
    with_temp_namespace(|client, ns| async move {
        install_crds(&client).await?;
        let token = support::install_chart_rbac(&client, &ns, None).await?;
        let operator = Operator::start_with_token(&ns, &token).await?;
        let name = apply_manifest(&client, &ns, &support::example("direct-api-call.yaml")?).await?;
        wait_ready(&client, &ns, &name, READY_TIMEOUT).await?;
        // The runner's Role, RoleBinding and Job: without `bind`, the
        // operator may bind the Role only once it exists, so a reconcile
        // that sent them all at once failed, and its Job could start first.
        let jobs: Api<k8s_openapi::api::batch::v1::Job> = Api::namespaced(client.clone(), &ns);
        let job = format!("{name}-experiment-1");
        poll_until(READY_TIMEOUT, "the runner Job", || async {
            Ok(jobs.get_opt(&job).await?)
        })
        .await?;
        let bindings: Api<k8s_openapi::api::rbac::v1::RoleBinding> =
            Api::namespaced(client.clone(), &ns);
        ensure!(
            bindings.get_opt(&format!("{name}-runner")).await?.is_some(),
            "the runner's RoleBinding exists once its Job does"
        );
        ensure!(
            operator.failures().await? == 0,
            "no reconcile failed on the way"
        );
        Ok(())
    })
    .await
}

#[tokio::test]
async fn without_one_rule_of_the_charts_rbac_the_operator_cannot_deploy() -> anyhow::Result<()> {
    with_temp_namespace(|client, ns| async move {
        install_crds(&client).await?;
        // Drop the rule for Services, ConfigMaps and Secrets.
        let token = support::install_chart_rbac(&client, &ns, Some("services")).await?;
        let operator = Operator::start_with_token(&ns, &token).await?;
        let name = apply_manifest(&client, &ns, &support::example("direct-api-call.yaml")?).await?;
        // The operator caches the children it owns, so the missing rule
        // shows first as a forbidden watch; no reconcile runs on a cache it
        // cannot fill.
        let forbidden = poll_until(Duration::from_secs(30), "a forbidden watch", || async {
            let n = operator.watch_failures("forbidden").await?;
            Ok((n > 0).then_some(n))
        })
        .await?;
        ensure!(forbidden > 0);
        let patterns: Api<CommunicationPattern> = Api::namespaced(client.clone(), &ns);
        let cp = patterns.get(&name).await?;
        let ready = cp.status.as_ref().is_some_and(|s| {
            s.conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True")
        });
        ensure!(
            !ready,
            "the operator reached Ready without the rule it needs"
        );
        let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
        ensure!(
            deployments
                .list(&ListParams::default())
                .await?
                .items
                .is_empty(),
            "nothing past the forbidden step is deployed"
        );
        Ok(())
    })
    .await
}

#[tokio::test]
async fn a_ready_pattern_gets_a_runner_job_and_a_runner_without_a_report_fails_clearly()
-> anyhow::Result<()> {
    with_temp_namespace(|client, ns| async move {
        install_crds(&client).await?;
        let operator = Operator::start_admin(&ns).await?;
        let name = apply_manifest(&client, &ns, &support::example("direct-api-call.yaml")?).await?;
        wait_ready(&client, &ns, &name, READY_TIMEOUT).await?;
        let jobs: Api<k8s_openapi::api::batch::v1::Job> = Api::namespaced(client.clone(), &ns);
        let job = jobs
            .get(&format!("{name}-experiment-1"))
            .await
            .context("the runner Job of generation 1")?;
        let job_uid = job.metadata.uid.clone();
        let pod = job
            .spec
            .and_then(|s| s.template.spec)
            .context("job pod spec")?;
        ensure!(pod.service_account_name.as_deref() == Some(format!("{name}-runner").as_str()));
        let cp = support::wait_experiment_settled(&client, &ns, &name, READY_TIMEOUT).await?;
        let status = cp.status.context("status")?;
        ensure!(
            status.phase == Some(commlab_api::Phase::Failed),
            "phase {:?}",
            status.phase
        );
        let condition = status
            .conditions
            .iter()
            .find(|c| c.type_ == "ExperimentComplete")
            .context("ExperimentComplete")?;
        ensure!(
            condition.status == "False" && condition.reason == "ReportMissing",
            "{condition:?}"
        );
        ensure!(
            status
                .conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True"),
            "the components stay Ready"
        );

        // An operator setting that changes the runner's pod template (which
        // Kubernetes does not let change) leaves the started Job alone, and
        // reconciles still succeed.
        drop(operator);
        let operator =
            Operator::start_admin_with_env(&ns, &[("COMMLAB_RUNNER_POD_LABELS", "team=other")])
                .await?;
        poll_until(
            READY_TIMEOUT,
            "reconciles by the restarted operator",
            || async { Ok((operator.reconciles().await? > 0).then_some(())) },
        )
        .await?;
        tokio::time::sleep(Duration::from_secs(3)).await;
        ensure!(
            operator.failures().await? == 0,
            "reconciles failed after the runner's pod template changed"
        );
        let kept = jobs.get(&format!("{name}-experiment-1")).await?;
        ensure!(
            kept.metadata.uid == job_uid
                && !kept
                    .spec
                    .and_then(|s| s.template.metadata)
                    .and_then(|m| m.labels)
                    .is_some_and(|l| l.contains_key("team")),
            "the started Job is kept as it was created"
        );
        Ok(())
    })
    .await
}

/// Longest a three-pattern comparison may take: each pattern deploys,
/// starts its local services and runs 1 s + 6 s of load.
const COMPARISON_TIMEOUT: Duration = Duration::from_secs(300);

/// The comparison's children, in the order they run.
const COMPARED: [(Pattern, &str); 3] = [
    (Pattern::DirectApiCall, "three-direct-call"),
    (Pattern::AsyncPolling, "three-polling"),
    (Pattern::CacheWithUpdateEvents, "three-cache-events"),
];

/// A PatternComparison of three patterns with a catalog outage and a broker
/// outage, its runner Jobs played for real (`commlab_e2e::player`): the
/// patterns run one after another, each to Completed with its report, and
/// the comparison's ranking, best pattern and claims follow from those reports.
#[tokio::test]
async fn a_comparison_of_three_patterns_runs_them_in_turn_and_ranks_them_from_their_reports()
-> anyhow::Result<()> {
    with_temp_namespace(|client, ns| async move {
        install_crds(&client).await?;
        // The runners create chaos objects; no Chaos Mesh acts on them here.
        support::install_chaos_mesh_crds(&client).await?;
        let keep_running = format!("{}=true", commlab_e2e::KEEP_RUNNING_LABEL);
        let _operator =
            Operator::start_admin_with_env(&ns, &[("COMMLAB_RUNNER_POD_LABELS", &keep_running)])
                .await?;
        let player = RunnerPlayer::start(
            client.clone(),
            PlayerConfig {
                namespace: ns.clone(),
                binary: support::commlab_binary().await?,
                kubeconfig: commlab_e2e::kubeconfig_path()?,
            },
        );
        let comparisons: Api<PatternComparison> = Api::namespaced(client.clone(), &ns);
        let manifest = json!({
            "apiVersion": "commlab.dev/v1alpha1", "kind": "PatternComparison",
            "metadata": { "name": "three" },
            "spec": {
                "patterns": COMPARED.map(|(pattern, _)| pattern),
                "workload": { "rate": 50, "duration": "6s", "warmup": "1s" },
                "chaos": [
                    { "name": "catalog-down", "fault": "Outage", "target": "catalog", "at": "1s", "duration": "2s" },
                    { "name": "broker-down", "fault": "Outage", "target": "broker", "at": "3500ms", "duration": "2s" },
                ],
            }
        });
        comparisons.create(&Default::default(), &serde_json::from_value(manifest)?).await?;

        let patterns: Api<CommunicationPattern> = Api::namespaced(client.clone(), &ns);
        let most_running = std::cell::Cell::new(0);
        let (patterns, comparisons, player_ref, most) =
            (&patterns, &comparisons, &player, &most_running);
        let done = poll_until(COMPARISON_TIMEOUT, "the comparison to complete", || async move {
            player_ref.failures()?;
            let running = patterns
                .list(&ListParams::default())
                .await?
                .items
                .iter()
                .filter(|cp| !matches!(phase(cp), Some(Phase::Completed | Phase::Failed)))
                .count();
            most.set(running.max(most.get()));
            let pc = comparisons.get("three").await?;
            let completed = pc.status.as_ref().and_then(|s| s.phase) == Some(Phase::Completed);
            Ok(completed.then_some(pc))
        })
        .await?;
        let plays = player.stop().await?;
        let most_running = most_running.get();
        ensure!(most_running <= 1, "{most_running} patterns ran at once");
        ensure!(
            plays.iter().filter(|p| p.outcome == Outcome::Played).count() == 3,
            "plays: {plays:#?}"
        );

        // Each pattern ran with its share of the plan, to Completed.
        let status = done.status.clone().context("status")?;
        ensure!(
            status.pattern_list.as_deref() == Some("DirectApiCall,AsyncPolling,CacheWithUpdateEvents"),
            "patternList {:?}",
            status.pattern_list
        );
        let runs: Vec<_> = status
            .runs
            .iter()
            .map(|r| (r.pattern, r.name.as_str(), r.phase))
            .collect();
        ensure!(
            runs == COMPARED.map(|(pattern, name)| (pattern, name, Some(Phase::Completed))),
            "runs {runs:?}"
        );
        let direct = patterns.get("three-direct-call").await?;
        let faults = |cp: &CommunicationPattern| cp.spec.chaos.iter().map(|f| f.name.clone()).collect::<Vec<_>>();
        ensure!(faults(&direct) == ["catalog-down"], "a broker fault must not reach DirectApiCall: {:?}", faults(&direct));
        let events = patterns.get("three-cache-events").await?;
        ensure!(faults(&events) == ["catalog-down", "broker-down"], "CacheWithUpdateEvents keeps the broker fault: {:?}", faults(&events));

        // The ranking, the best pattern and the claims follow from the reports.
        let mut reports = Vec::new();
        for (pattern, name) in COMPARED {
            let cp = patterns.get(name).await?;
            ensure!(
                cp.status.as_ref().is_some_and(|s| s.results.is_some()),
                "{name} has no results"
            );
            reports.push(report_of(&client, &ns, name, pattern).await?);
        }
        check_rankings(&status, &reports)?;
        check_best(&status, &reports)?;
        check_cross_pattern_claims(&status, &reports)?;

        // kubectl shows the best pattern.
        let table = support::kubectl(&["get", "pcmp", "three", "--namespace", &ns]).await?;
        let rows: Vec<Vec<&str>> = table.lines().map(|l| l.split_whitespace().collect()).collect();
        let best = status.best.context("no best pattern")?;
        ensure!(
            rows.len() == 2
                && rows[0] == ["NAME", "PATTERNS", "PHASE", "BEST", "AGE"]
                && rows[1][..4]
                    == ["three", "DirectApiCall,AsyncPolling,CacheWithUpdateEvents", "Completed", best.as_str()],
            "kubectl get pcmp:\n{table}"
        );
        Ok(())
    })
    .await
}

fn phase(cp: &CommunicationPattern) -> Option<Phase> {
    cp.status.as_ref().and_then(|s| s.phase)
}

/// The report the runner of child `name` wrote, for `pattern`.
async fn report_of(
    client: &kube::Client,
    ns: &str,
    name: &str,
    pattern: Pattern,
) -> anyhow::Result<PatternReport> {
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let cm = config_maps.get(&format!("{name}-report")).await?;
    let text = cm
        .data
        .as_ref()
        .and_then(|d| d.get("report.json"))
        .with_context(|| format!("{name}-report has no report.json"))?;
    Report::from_json(text)?
        .patterns
        .into_iter()
        .find(|p| p.pattern == pattern)
        .with_context(|| format!("{name}'s report has no {pattern}"))
}

/// Per axis: the patterns with a score on it, best score first.
fn check_rankings(
    status: &PatternComparisonStatus,
    reports: &[PatternReport],
) -> anyhow::Result<()> {
    let axes: Vec<Axis> = status.rankings.iter().map(|r| r.axis).collect();
    ensure!(
        axes == [
            Axis::Performance,
            Axis::Scalability,
            Axis::Isolation,
            Axis::Complexity,
            Axis::Consistency
        ],
        "ranked axes {axes:?}"
    );
    for ranking in &status.rankings {
        let score = |pattern: Pattern| {
            reports
                .iter()
                .find(|r| r.pattern == pattern)
                .and_then(|r| score_on(&r.scores, ranking.axis))
        };
        let scored: Vec<f64> = ranking.order.iter().filter_map(|&p| score(p)).collect();
        ensure!(
            scored.len() == ranking.order.len(),
            "{:?} ranks a pattern without a score: {:?}",
            ranking.axis,
            ranking.order
        );
        let with_score = reports
            .iter()
            .filter(|r| score(r.pattern).is_some())
            .count();
        ensure!(
            ranking.order.len() == with_score,
            "{:?} ranks {:?}, {with_score} patterns have a score",
            ranking.axis,
            ranking.order
        );
        ensure!(
            scored.windows(2).all(|pair| pair[0] >= pair[1]),
            "{:?}: {:?} has scores {scored:?}, not best first",
            ranking.axis,
            ranking.order
        );
        // Equal scores: the higher mean over every axis first.
        let mean = |pattern: Pattern| {
            reports
                .iter()
                .find(|r| r.pattern == pattern)
                .and_then(|r| mean_score(&r.scores))
        };
        for pair in ranking.order.windows(2) {
            ensure!(
                score(pair[0]) != score(pair[1]) || mean(pair[0]) >= mean(pair[1]),
                "{:?}: {} and {} tie, and {} has the higher mean score",
                ranking.axis,
                pair[0],
                pair[1],
                pair[1]
            );
        }
    }
    // No capacity probe ran, so no pattern has a scalability score; every
    // pattern has a baseline, so every one has a performance score.
    let order = |axis| {
        &status
            .rankings
            .iter()
            .find(|r| r.axis == axis)
            .unwrap()
            .order
    };
    ensure!(order(Axis::Scalability).is_empty() && order(Axis::Performance).len() == 3);
    Ok(())
}

/// The best pattern is the first on `spec.rankBy` (Performance by default),
/// and no other pattern beat it on every baseline latency figure at an equal
/// or better success ratio (the performance score falls with each).
fn check_best(status: &PatternComparisonStatus, reports: &[PatternReport]) -> anyhow::Result<()> {
    let best = status.best.context("no best pattern")?;
    ensure!(
        status.rankings[0].axis == Axis::Performance
            && status.rankings[0].order.first() == Some(&best),
        "best {best} is not first on Performance: {:?}",
        status.rankings[0]
    );
    let figures = |r: &PatternReport| {
        let b = &r.baseline;
        [
            b.response_ms.p50,
            b.response_ms.p99,
            b.completion_ms.p50,
            b.completion_ms.p99,
        ]
    };
    let best_report = reports
        .iter()
        .find(|r| r.pattern == best)
        .context("best's report")?;
    for other in reports.iter().filter(|r| r.pattern != best) {
        let faster_everywhere = figures(other)
            .iter()
            .zip(figures(best_report))
            .all(|(theirs, ours)| *theirs < ours);
        ensure!(
            !(faster_everywhere
                && other.baseline.success_ratio >= best_report.baseline.success_ratio),
            "{} beat the best, {best}, on every latency: {:?} vs {:?}",
            other.pattern,
            figures(other),
            figures(best_report)
        );
    }
    Ok(())
}

/// The cross-pattern claims, judged from the reports' baseline completion p50.
fn check_cross_pattern_claims(
    status: &PatternComparisonStatus,
    reports: &[PatternReport],
) -> anyhow::Result<()> {
    let p50 = |pattern| {
        reports
            .iter()
            .find(|r| r.pattern == pattern)
            .map(|r| r.baseline.completion_ms.p50)
            .unwrap()
    };
    let verdict = |id: &str| {
        status
            .claims
            .iter()
            .find(|c| c.id == id)
            .map(|c| c.verdict)
            .with_context(|| format!("no claim {id} in {:?}", status.claims))
    };
    let confirmed_if = |holds: bool| {
        if holds {
            ClaimVerdict::Confirmed
        } else {
            ClaimVerdict::Contradicted
        }
    };
    let (direct, polling, cache) = (
        p50(Pattern::DirectApiCall),
        p50(Pattern::AsyncPolling),
        p50(Pattern::CacheWithUpdateEvents),
    );
    ensure!(
        verdict(claim_ids::POLLING_SLOWER_THAN_DIRECT)? == confirmed_if(polling > direct),
        "polling {polling} ms vs direct {direct} ms: {:?}",
        status.claims
    );
    // AsyncMessaging did not run: the cache is compared with the direct call only.
    ensure!(
        verdict(claim_ids::CACHE_FASTER_THAN_DIRECT_AND_MESSAGING)? == confirmed_if(cache < direct),
        "cache {cache} ms vs direct {direct} ms: {:?}",
        status.claims
    );
    Ok(())
}
