//! orders and catalog as real processes, against real PostgreSQL and NATS
//! servers on loopback, for each of the six patterns.
//!
//! A custom harness (libtest-mimic) so that every test shares one PostgreSQL
//! server (a database each) that is stopped when the run ends. Tests that
//! need a broker get their own NATS server: stream names are fixed by the
//! protocol, and a NATS server starts in milliseconds. Every wait is bounded.

mod support;

use std::{
    future::Future,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, Result, anyhow, bail, ensure};
use commlab_api::Pattern;
use commlab_workload::{
    infra::{NatsServer, PostgresServer, Restartable, Topology, TopologyConfig},
    services::protocol::{
        CATALOG_PRICES_STREAM, CompletedOrder, ORDERS_COMPLETED, Order, PendingOrder, PriceChange,
        Product,
    },
};
use futures::StreamExt;
use libtest_mimic::Arguments;
use reqwest::StatusCode;
use serde::de::DeserializeOwned;
use serde_json::json;
use support::{Trials, add_trials, commlab_binary};

/// Longest a test may take, whatever it waits for.
const TEST_TIMEOUT: Duration = Duration::from_secs(120);
/// Longest wait for a change to reach a cache, or an order to complete.
const PROPAGATION: Duration = Duration::from_secs(10);
const PRODUCTS: i64 = 20;

fn main() {
    let arguments = Arguments::from_args();
    let runtime = support::runtime();
    // Listing tests needs no servers.
    let postgres = if arguments.list {
        None
    } else {
        Some(
            runtime
                .block_on(PostgresServer::launch())
                .expect("starting PostgreSQL"),
        )
    };
    let suite = Arc::new(Suite {
        postgres,
        databases: AtomicUsize::new(0),
    });

    let mut trials = Trials::new(&runtime, &suite, TEST_TIMEOUT);
    for pattern in Pattern::ALL {
        trials.add(
            &format!("checkout_uses_the_current_price_and_sees_updates::{pattern}"),
            move |suite| checkout_uses_the_current_price_and_sees_updates(suite, pattern),
        );
    }
    add_trials!(
        trials,
        async_messaging_accepts_checkouts_while_catalog_is_down,
        async_messaging_fails_fast_while_the_broker_is_down_and_recovers,
        direct_api_call_answers_503_quickly_while_catalog_is_down,
        async_polling_answers_503_quickly_while_catalog_is_down,
        cache_with_update_events_rides_out_a_broker_outage,
        cache_with_update_events_serves_while_catalog_is_down,
        cache_with_update_events_replays_prices_when_orders_restarts,
        cache_with_api_updates_pushes_after_catalog_is_killed_and_restarted,
        shared_data_answers_503_while_the_database_is_down_and_recovers,
        serve_refuses_flags_that_do_not_fit_the_pattern,
    );

    let conclusion = trials.run(&arguments);
    // Stop PostgreSQL before exiting: exit() would skip the drop.
    drop(suite);
    conclusion.exit();
}

struct Suite {
    postgres: Option<PostgresServer>,
    databases: AtomicUsize,
}

impl Suite {
    /// A fresh database in the shared server.
    async fn database(&self) -> Result<String> {
        let n = self.databases.fetch_add(1, Ordering::SeqCst);
        let postgres = self.postgres.as_ref().context("no PostgreSQL server")?;
        Ok(postgres.create_database(&format!("catalog_{n}")).await?)
    }

    /// `pattern`'s services on a fresh database, and a NATS server of their own if needed.
    async fn scenario(&self, pattern: Pattern) -> Result<Scenario> {
        let database_url = self.database().await?;
        Scenario::launch(pattern, database_url).await
    }
}

/// One pattern's running services and the client the tests talk to them with.
struct Scenario {
    topology: Topology,
    nats: Option<NatsServer>,
    http: reqwest::Client,
}

impl Scenario {
    async fn launch(pattern: Pattern, database_url: String) -> Result<Self> {
        let nats = match pattern.needs_broker() {
            true => Some(NatsServer::launch().await?),
            false => None,
        };
        let mut config = TopologyConfig::new(pattern, commlab_binary());
        config.database_url = database_url;
        config.broker_url = nats.as_ref().map(NatsServer::url);
        config.products = PRODUCTS;
        config.env = vec![("RUST_LOG".into(), "info,commlab_workload=debug".into())];
        let topology = Topology::launch(&config).await?;
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(5))
            .build()?;
        Ok(Scenario {
            topology,
            nats,
            http,
        })
    }

    fn pattern(&self) -> Pattern {
        self.topology.pattern
    }

    /// `POST /checkout`: the status and the body.
    async fn checkout(&self, product_id: i64) -> Result<(StatusCode, serde_json::Value)> {
        let response = self
            .http
            .post(format!("{}/checkout", self.topology.orders_url()))
            .json(&json!({"product_id": product_id, "quantity": 2}))
            .send()
            .await?;
        let status = response.status();
        Ok((status, response.json().await.unwrap_or_default()))
    }

    /// The body of a checkout that must answer `expected`.
    async fn checkout_answering<T: DeserializeOwned>(
        &self,
        product_id: i64,
        expected: StatusCode,
    ) -> Result<T> {
        let (status, body) = self.checkout(product_id).await?;
        ensure!(
            status == expected,
            "checkout answered {status}: {body}\n{}",
            self.logs()
        );
        Ok(serde_json::from_value(body)?)
    }

    /// A checkout that must be priced at once (`200`).
    async fn priced_checkout(&self, product_id: i64) -> Result<Order> {
        self.checkout_answering(product_id, StatusCode::OK).await
    }

    /// A checkout that must be accepted (`202`, `AsyncMessaging`).
    async fn accepted_checkout(&self, product_id: i64) -> Result<PendingOrder> {
        self.checkout_answering(product_id, StatusCode::ACCEPTED)
            .await
    }

    /// A checkout while something it needs is down: answered with one of
    /// `refusals` within `within`, not left to the client's timeout. Its body.
    async fn refused_checkout(
        &self,
        product_id: i64,
        refusals: &[StatusCode],
        within: Duration,
    ) -> Result<serde_json::Value> {
        let started = Instant::now();
        let (status, body) = self.checkout(product_id).await?;
        ensure!(refusals.contains(&status), "{status}: {body}");
        ensure!(started.elapsed() < within, "took {:?}", started.elapsed());
        Ok(body)
    }

    /// Checks out `product_id` until its price is at `version`, within [`PROPAGATION`].
    async fn eventually_priced_at(
        &self,
        what: &str,
        product_id: i64,
        version: i64,
    ) -> Result<Order> {
        eventually(what, PROPAGATION, || async {
            let order = self.priced_checkout(product_id).await?;
            Ok((order.version == version).then_some(order))
        })
        .await
        .with_context(|| self.logs())
    }

    /// The order as priced, whether at once or through a completion event.
    async fn order(&self, product_id: i64) -> Result<Order> {
        if !self.pattern().completes_asynchronously() {
            return self.priced_checkout(product_id).await;
        }
        let mut completions = self.completions().await?;
        let pending = self.accepted_checkout(product_id).await?;
        let completed = completions.wait_for(&pending.order_id).await;
        completed.map(|c| c.order).with_context(|| self.logs())
    }

    async fn product(&self, id: i64) -> Result<Product> {
        let url = format!("{}/products/{id}", self.topology.catalog_url());
        Ok(self
            .http
            .get(url)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?)
    }

    async fn set_price(&self, id: i64, price_cents: i64) -> Result<PriceChange> {
        let url = format!("{}/products/{id}/price", self.topology.catalog_url());
        let response = self
            .http
            .put(url)
            .json(&json!({"price_cents": price_cents}))
            .send()
            .await?;
        Ok(response.error_for_status()?.json().await?)
    }

    async fn completions(&self) -> Result<Completions> {
        let nats = self.nats.as_ref().context("the pattern has no broker")?;
        let client = async_nats::connect(nats.url()).await?;
        let subscriber = client.subscribe(ORDERS_COMPLETED).await?;
        // The subscription must reach the server before the checkout.
        client.flush().await?;
        Ok(Completions {
            _client: client,
            subscriber,
            seen: Vec::new(),
        })
    }

    fn broker(&mut self) -> Result<&mut NatsServer> {
        self.nats.as_mut().context("the pattern has no broker")
    }

    fn logs(&self) -> String {
        let orders = &self.topology.orders[0];
        format!(
            "--- catalog log\n{}\n--- orders log\n{}",
            self.topology.catalog.log_tail(15),
            orders.log_tail(15)
        )
    }
}

struct Completions {
    _client: async_nats::Client,
    subscriber: async_nats::Subscriber,
    /// Events received while waiting for another order: completions may come in any order.
    seen: Vec<CompletedOrder>,
}

impl Completions {
    /// The completion event of `order_id`, within [`PROPAGATION`].
    async fn wait_for(&mut self, order_id: &str) -> Result<CompletedOrder> {
        if let Some(index) = self.seen.iter().position(|c| c.order.order_id == order_id) {
            return Ok(self.seen.swap_remove(index));
        }
        let deadline = tokio::time::Instant::now() + PROPAGATION;
        loop {
            let message = tokio::time::timeout_at(deadline, self.subscriber.next())
                .await
                .map_err(|_| anyhow!("no completion of order {order_id} within {PROPAGATION:?}"))?
                .context("the subscription ended")?;
            let completed: CompletedOrder = serde_json::from_slice(&message.payload)?;
            if completed.order.order_id == order_id {
                return Ok(completed);
            }
            self.seen.push(completed);
        }
    }
}

/// Polls `check` every 50 ms until it returns `Some`, for at most `timeout`.
async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>>>,
{
    let deadline = Instant::now() + timeout;
    let mut last_error = None;
    loop {
        match check().await {
            Ok(Some(value)) => return Ok(value),
            Ok(None) => {}
            Err(error) => last_error = Some(error),
        }
        if Instant::now() > deadline {
            bail!("{what}: not within {timeout:?} (last error: {last_error:?})");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn assert_priced_at(order: &Order, product: &Product) -> Result<()> {
    ensure!(
        (order.product_id, order.price_cents, order.version)
            == (product.id, product.price_cents, product.version),
        "order {order:?} is not priced at {product:?}"
    );
    ensure!(
        order.total_cents == product.price_cents * order.quantity,
        "wrong total in {order:?}"
    );
    Ok(())
}

// The tests.

async fn checkout_uses_the_current_price_and_sees_updates(
    suite: Arc<Suite>,
    pattern: Pattern,
) -> Result<()> {
    let scenario = suite.scenario(pattern).await?;
    let product = scenario.product(3).await?;
    assert_priced_at(&scenario.order(3).await?, &product)?;

    let change = scenario.set_price(3, product.price_cents + 111).await?;
    ensure!(
        change.version == product.version + 1,
        "the version was not bumped: {change:?}"
    );
    let updated = scenario.product(3).await?;
    ensure!((updated.price_cents, updated.version) == (change.price_cents, change.version));

    if pattern.caches_prices() {
        // Propagation happens after catalog's answer: bounded, not immediate.
        let order = scenario
            .eventually_priced_at("the cache sees the change", 3, change.version)
            .await?;
        assert_priced_at(&order, &updated)?;
    } else {
        assert_priced_at(&scenario.order(3).await?, &updated)?;
    }
    // Another product is untouched.
    assert_priced_at(&scenario.order(4).await?, &scenario.product(4).await?)
}

async fn async_messaging_accepts_checkouts_while_catalog_is_down(suite: Arc<Suite>) -> Result<()> {
    let mut scenario = suite.scenario(Pattern::AsyncMessaging).await?;
    let product = scenario.product(5).await?;
    let mut completions = scenario.completions().await?;
    // Killed, as a pod is: its pull requests are left behind in the broker.
    scenario.topology.catalog.kill().await?;

    let mut accepted = Vec::new();
    for _ in 0..3 {
        accepted.push(scenario.accepted_checkout(5).await?);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    scenario.topology.catalog.start().await?;
    for pending in accepted {
        let completed = completions
            .wait_for(&pending.order_id)
            .await
            .with_context(|| scenario.logs())?;
        assert_priced_at(&completed.order, &product)?;
    }
    Ok(())
}

async fn async_messaging_fails_fast_while_the_broker_is_down_and_recovers(
    suite: Arc<Suite>,
) -> Result<()> {
    let mut scenario = suite.scenario(Pattern::AsyncMessaging).await?;
    scenario.broker()?.stop().await?;
    // The client notices the lost connection at once on loopback.
    scenario
        .refused_checkout(
            1,
            &[StatusCode::SERVICE_UNAVAILABLE, StatusCode::GATEWAY_TIMEOUT],
            Duration::from_millis(1500),
        )
        .await?;

    scenario.broker()?.start().await?;
    let product = scenario.product(1).await?;
    let order = eventually("orders is back once the broker is", PROPAGATION, || async {
        Ok(scenario.order(1).await.ok())
    })
    .await?;
    assert_priced_at(&order, &product)
}

async fn direct_api_call_answers_503_quickly_while_catalog_is_down(
    suite: Arc<Suite>,
) -> Result<()> {
    let mut scenario = suite.scenario(Pattern::DirectApiCall).await?;
    scenario.priced_checkout(1).await?;
    scenario.topology.catalog.stop().await?;
    for _ in 0..3 {
        let body = scenario
            .refused_checkout(
                1,
                &[StatusCode::SERVICE_UNAVAILABLE],
                Duration::from_millis(500),
            )
            .await?;
        ensure!(
            body["error"]
                .as_str()
                .is_some_and(|e| e.contains("catalog")),
            "{body}"
        );
    }
    scenario.topology.catalog.start().await?;
    scenario.priced_checkout(1).await.map(drop)
}

async fn async_polling_answers_503_quickly_while_catalog_is_down(suite: Arc<Suite>) -> Result<()> {
    let mut scenario = suite.scenario(Pattern::AsyncPolling).await?;
    scenario.priced_checkout(1).await?;
    scenario.topology.catalog.kill().await?;
    scenario
        .refused_checkout(
            1,
            &[StatusCode::SERVICE_UNAVAILABLE],
            Duration::from_millis(500),
        )
        .await?;
    scenario.topology.catalog.start().await?;
    scenario.priced_checkout(1).await.map(drop)
}

async fn cache_with_update_events_rides_out_a_broker_outage(suite: Arc<Suite>) -> Result<()> {
    let mut scenario = suite.scenario(Pattern::CacheWithUpdateEvents).await?;
    let product = scenario.product(9).await?;
    scenario.broker()?.stop().await?;

    // orders serves from its cache; catalog commits changes and keeps their
    // events until the broker is back.
    assert_priced_at(&scenario.priced_checkout(9).await?, &product)?;
    let change = scenario.set_price(9, product.price_cents + 9).await?;
    assert_priced_at(&scenario.priced_checkout(9).await?, &product)?;

    scenario.broker()?.start().await?;
    scenario
        .eventually_priced_at(
            "the change reaches orders after the outage",
            9,
            change.version,
        )
        .await
        .map(drop)
}

async fn cache_with_update_events_serves_while_catalog_is_down(suite: Arc<Suite>) -> Result<()> {
    let mut scenario = suite.scenario(Pattern::CacheWithUpdateEvents).await?;
    let product = scenario.product(2).await?;
    scenario.topology.catalog.stop().await?;
    for _ in 0..3 {
        assert_priced_at(&scenario.priced_checkout(2).await?, &product)?;
    }
    Ok(())
}

async fn cache_with_update_events_replays_prices_when_orders_restarts(
    suite: Arc<Suite>,
) -> Result<()> {
    let mut scenario = suite.scenario(Pattern::CacheWithUpdateEvents).await?;
    let product = scenario.product(6).await?;
    for step in 1..=3 {
        scenario.set_price(6, product.price_cents + step).await?;
    }
    let updated = scenario.product(6).await?;
    scenario
        .eventually_priced_at("orders sees the last change", 6, updated.version)
        .await?;

    // The stream keeps one message per product: its price list.
    let jetstream =
        async_nats::jetstream::new(async_nats::connect(scenario.broker()?.url()).await?);
    let info = jetstream
        .get_stream(CATALOG_PRICES_STREAM)
        .await?
        .get_info()
        .await?;
    ensure!(
        info.state.messages == PRODUCTS as u64,
        "{} messages in the stream",
        info.state.messages
    );

    // Restarted orders is ready only after the replay: its first answer is current.
    let orders = &mut scenario.topology.orders[0];
    orders.stop().await?;
    orders.start().await?;
    assert_priced_at(&scenario.priced_checkout(6).await?, &updated)?;
    assert_priced_at(
        &scenario.priced_checkout(7).await?,
        &scenario.product(7).await?,
    )
}

async fn cache_with_api_updates_pushes_after_catalog_is_killed_and_restarted(
    suite: Arc<Suite>,
) -> Result<()> {
    let mut scenario = suite.scenario(Pattern::CacheWithApiUpdates).await?;
    let product = scenario.product(8).await?;
    scenario.topology.catalog.kill().await?;
    // The cache answers while catalog is down.
    assert_priced_at(&scenario.priced_checkout(8).await?, &product)?;
    scenario.topology.catalog.start().await?;
    // catalog kept its subscribers in its database.
    let change = scenario.set_price(8, product.price_cents + 5).await?;
    scenario
        .eventually_priced_at("the push reaches orders", 8, change.version)
        .await
        .map(drop)
}

async fn shared_data_answers_503_while_the_database_is_down_and_recovers(
    _: Arc<Suite>,
) -> Result<()> {
    // Its own server: stopping the shared one would break the other tests.
    let mut postgres = PostgresServer::launch().await?;
    let database_url = postgres.create_database("catalog").await?;
    let scenario = Scenario::launch(Pattern::SharedData, database_url).await?;
    let product = scenario.product(1).await?;
    assert_priced_at(&scenario.priced_checkout(1).await?, &product)?;

    postgres.kill().await?;
    scenario
        .refused_checkout(
            1,
            &[StatusCode::SERVICE_UNAVAILABLE],
            Duration::from_millis(1500),
        )
        .await?;

    postgres.start().await?;
    let order = eventually("orders reconnects to the database", PROPAGATION, || async {
        Ok(scenario.priced_checkout(1).await.ok())
    })
    .await?;
    assert_priced_at(&order, &product)
}

/// `commlab serve` with `args`, without the catalog URL a shell may export.
fn commlab_serve(args: &[&str]) -> Result<std::process::Output> {
    Ok(std::process::Command::new(commlab_binary())
        .arg("serve")
        .args(args)
        .env_remove("COMMLAB_CATALOG_URL")
        .output()?)
}

async fn serve_refuses_flags_that_do_not_fit_the_pattern(_: Arc<Suite>) -> Result<()> {
    let output = commlab_serve(&[
        "orders",
        "--pattern",
        "DirectApiCall",
        "--listen",
        "127.0.0.1:0",
    ])?;
    ensure!(
        !output.status.success(),
        "orders started without --catalog-url"
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    ensure!(
        stderr.contains("--catalog-url is required for DirectApiCall"),
        "{stderr}"
    );

    let output = commlab_serve(&[
        "catalog",
        "--pattern",
        "Carrier",
        "--database-url",
        "postgres://x",
    ])?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    ensure!(
        !output.status.success() && stderr.contains("unknown pattern"),
        "{stderr}"
    );
    Ok(())
}
