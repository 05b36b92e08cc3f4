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
use commlab_api::CommunicationPattern;
use commlab_e2e::{poll_until, with_temp_namespace};
use k8s_openapi::api::{
    apps::v1::{Deployment, StatefulSet},
    core::v1::Service,
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
async fn the_charts_rbac_is_enough_to_reach_ready() -> anyhow::Result<()> {
    with_temp_namespace(|client, ns| async move {
        install_crds(&client).await?;
        let token = support::install_chart_rbac(&client, &ns, None).await?;
        let _operator = Operator::start_with_token(&ns, &token).await?;
        let name = apply_manifest(&client, &ns, &support::example("direct-api-call.yaml")?).await?;
        wait_ready(&client, &ns, &name, READY_TIMEOUT).await?;
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
        let _operator = Operator::start_admin(&ns).await?;
        let name = apply_manifest(&client, &ns, &support::example("direct-api-call.yaml")?).await?;
        wait_ready(&client, &ns, &name, READY_TIMEOUT).await?;
        let jobs: Api<k8s_openapi::api::batch::v1::Job> = Api::namespaced(client.clone(), &ns);
        let job = jobs
            .get(&format!("{name}-experiment-1"))
            .await
            .context("the runner Job of generation 1")?;
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
        Ok(())
    })
    .await
}

#[tokio::test]
async fn a_comparison_runs_its_patterns_one_after_another_to_completed() -> anyhow::Result<()> {
    with_temp_namespace(|client, ns| async move {
        install_crds(&client).await?;
        let _operator = Operator::start_admin(&ns).await?;
        let comparisons: Api<commlab_api::PatternComparison> = Api::namespaced(client.clone(), &ns);
        let manifest = json!({
            "apiVersion": "commlab.dev/v1alpha1", "kind": "PatternComparison",
            "metadata": { "name": "three" },
            "spec": {
                "patterns": ["DirectApiCall", "AsyncPolling", "CacheWithUpdateEvents"],
                "workload": { "rate": 50, "duration": "20s", "warmup": "2s" },
                "chaos": [{ "name": "broker-down", "fault": "Outage", "target": "broker", "at": "5s", "duration": "5s" }],
            }
        });
        comparisons.create(&Default::default(), &serde_json::from_value(manifest)?).await?;
        let patterns: Api<CommunicationPattern> = Api::namespaced(client.clone(), &ns);
        let most_running = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let done = poll_until(Duration::from_secs(150), "the comparison to complete", || {
            let (patterns, comparisons) = (patterns.clone(), comparisons.clone());
            let most = most_running.clone();
            async move {
                let running = patterns
                    .list(&ListParams::default())
                    .await?
                    .items
                    .iter()
                    .filter(|cp| !matches!(cp.status.as_ref().and_then(|s| s.phase), Some(commlab_api::Phase::Completed | commlab_api::Phase::Failed)))
                    .count();
                most.fetch_max(running, std::sync::atomic::Ordering::Relaxed);
                let pc = comparisons.get("three").await?;
                Ok((pc.status.as_ref().and_then(|s| s.phase) == Some(commlab_api::Phase::Completed)).then_some(pc))
            }
        })
        .await?;
        let most = most_running.load(std::sync::atomic::Ordering::Relaxed);
        ensure!(most <= 1, "{most} patterns ran at once");
        let status = done.status.context("status")?;
        ensure!(status.runs.len() == 3, "runs: {:?}", status.runs);
        ensure!(status.pattern_list.as_deref() == Some("DirectApiCall,AsyncPolling,CacheWithUpdateEvents"));
        let direct = patterns.get("three-direct-call").await?;
        ensure!(direct.spec.chaos.is_empty(), "a broker fault must not reach DirectApiCall");
        let events = patterns.get("three-cache-events").await?;
        ensure!(events.spec.chaos.len() == 1, "CacheWithUpdateEvents keeps the broker fault");
        Ok(())
    })
    .await
}
