// The console and the portal in a real Chromium (Debian's, driven by playwright-core), against a
// live tollbooth that .ci/browser started: TOLLBOOTH_URL, TOLLBOOTH_ADMIN_TOKEN, SHOTS (where the
// screenshots go). Seeds its own catalog and usage through the admin API and the events API.
// Exits non-zero on the first check that fails, saying which.
import { chromium } from "playwright-core";
import { mkdirSync } from "node:fs";
import assert from "node:assert/strict";

const base = process.env.TOLLBOOTH_URL;
const token = process.env.TOLLBOOTH_ADMIN_TOKEN;
const shots = process.env.SHOTS ?? "target/browser";
const executablePath = process.env.CHROMIUM ?? "/usr/bin/chromium";
mkdirSync(shots, { recursive: true });

async function api(method, path, body, headers = {}) {
  const response = await fetch(base + path, {
    method,
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json", ...headers },
    body: body === undefined ? undefined : typeof body === "string" ? body : JSON.stringify(body),
  });
  const text = await response.text();
  let json = null;
  try { json = JSON.parse(text); } catch { /* not JSON */ }
  if (!response.ok && !headers["x-allow-failure"]) {
    throw new Error(`${method} ${path}: ${response.status} ${text}`);
  }
  return { status: response.status, json, text };
}

// An amount as the API writes it, with trailing zeros dropped ("52.00" and "52" are one figure).
const normal = (text) => (text.includes(".") ? text.replace(/0+$/, "").replace(/\.$/, "") : text);

let step = "seed";
function check(name) { step = name; console.log(`- ${name}`); }

// The hours acme's calls were seeded in: one bucket each.
let acmeHours = 0;

async function seed() {
  await api("POST", "/v1/apis", { slug: "weather", name: "Weather API" });
  await api("POST", "/v1/tiers", {
    slug: "weather-pro", api: "weather", name: "Pro", currency: "usd",
    fixed_fee: { amount: "25.00", interval: "month" },
    usage: { model: "per_unit", unit_price: "0.002" },
    quota: { hard_limit: 1000 },
  });
  for (const name of ["acme", "globex"]) {
    await api("POST", "/v1/subscribers", { external_id: name, name: name.toUpperCase(), email: `billing@${name}.example` });
    await api("POST", "/v1/subscriptions", {
      external_id: `${name}-weather`, subscriber: name, tier: "weather-pro", consumer_keys: [`key-${name}`],
    });
  }
  const gateway = await api("POST", "/v1/gateways", { name: "edge" });
  const key = gateway.json.key;
  // Calls spread over the last 30 hours: acme in every third hour, globex in every fifth. Only
  // hours since midnight UTC: the subscriptions start today, and earlier calls are refused.
  const records = [];
  const now = Date.now();
  const midnight = now - (now % 86_400_000);
  for (let hour = 0; hour < 30 && now - hour * 3600_000 >= midnight; hour++) {
    const at = new Date(now - hour * 3600_000).toISOString();
    if (hour % 3 === 0) acmeHours += 1;
    if (hour % 3 === 0) for (let i = 0; i <= hour; i++) records.push({ id: `a-${hour}-${i}`, consumer: "key-acme", api: "weather", timestamp: at, status: 200 });
    if (hour % 5 === 0) records.push({ id: `g-${hour}`, consumer: "key-globex", api: "weather", timestamp: at, status: 200 });
  }
  const sent = await fetch(`${base}/v1/events`, {
    method: "POST",
    headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
    body: JSON.stringify(records),
  });
  assert.equal(sent.status, 202, await sent.text());
}

const browser = await chromium.launch({ executablePath, args: ["--no-sandbox", "--disable-gpu"] });
try {
  await seed();
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();

  check("an unsigned visitor is sent to the sign-in page");
  await page.goto(`${base}/console`);
  assert.match(page.url(), /\/console\/sign-in$/);
  await page.screenshot({ path: `${shots}/sign-in.png`, fullPage: true });

  check("a wrong token is refused on the page");
  await page.fill("#token", "tba_not_the_token");
  await page.click("button[type=submit]");
  assert.match(await page.textContent(".error"), /not the admin token/);

  check("the admin token signs in, into an HttpOnly, SameSite=Strict cookie");
  await page.fill("#token", token);
  await page.click("button[type=submit]");
  await page.waitForURL(`${base}/console`);
  const cookie = (await context.cookies()).find((c) => c.name === "tb_session");
  assert.ok(cookie, "a session cookie");
  assert.equal(cookie.httpOnly, true);
  assert.equal(cookie.sameSite, "Strict");

  check("the overview's revenue equals GET /v1/revenue");
  const revenue = (await api("GET", "/v1/revenue")).json;
  assert.equal(revenue.currencies.length, 1, JSON.stringify(revenue));
  const usd = revenue.currencies[0];
  const figures = page.locator("[data-month]").first().locator(".figures[data-currency=usd]");
  assert.equal(normal(await figures.getAttribute("data-open")), normal(usd.open.total));
  assert.equal(normal(await figures.getAttribute("data-billed")), normal(usd.billed.total));
  assert.ok(Number(usd.open.total) > 0, `open revenue: ${usd.open.total}`);
  // $25.00 a month for two subscriptions, as the page writes it.
  assert.match(await figures.textContent(), /\$50\.00/);
  await page.screenshot({ path: `${shots}/overview.png`, fullPage: true });

  check("subscriptions can be searched");
  await page.click("text=Subscriptions");
  await page.fill("input[name=q]", "acme");
  await page.click("form.search button");
  const rows = page.locator("#subscriptions tbody tr");
  assert.equal(await rows.count(), 1);
  assert.equal(await rows.first().getAttribute("data-subscription"), "acme-weather");
  await page.screenshot({ path: `${shots}/subscriptions.png`, fullPage: true });

  check("a subscription's chart has as many points as GET /v1/usage returns");
  await rows.first().locator("a").click();
  const usage = (await api("GET", "/v1/usage?subscription=acme-weather")).json;
  assert.equal(usage.data.length, acmeHours, `${usage.data.length} buckets`);
  assert.equal(await page.locator("svg.chart rect.point").count(), usage.data.length);
  const daily = (await api("GET", "/v1/usage?subscription=acme-weather&granularity=day")).json;
  await page.click("text=Daily");
  assert.equal(await page.locator("svg.chart rect.point").count(), daily.data.length);
  const preview = (await api("GET", "/v1/subscriptions/acme-weather/invoice-preview")).json;
  assert.equal(normal(await page.getAttribute("[data-total]", "data-total")), normal(preview.total));
  await page.screenshot({ path: `${shots}/subscription.png`, fullPage: true });

  check("a form posted without the CSRF token is refused");
  const subscriptionPath = new URL(page.url()).pathname;
  const forged = await context.request.post(`${base}${subscriptionPath}/portal-links`, {
    form: { valid_for: "7d" }, maxRedirects: 0,
  });
  assert.equal(forged.status(), 403);
  const wrong = await context.request.post(`${base}${subscriptionPath}/portal-links`, {
    form: { valid_for: "7d", csrf: "0".repeat(64) }, maxRedirects: 0,
  });
  assert.equal(wrong.status(), 403);
  const before = (await api("GET", "/v1/subscriptions/acme-weather/portal-links")).json;
  assert.equal(before.length, 0, "a refused form made no link");

  check("the console makes a portal link that shows its subscription and no other");
  await page.click("text=Make a portal link");
  const link = await page.getAttribute("#new-portal-link", "href");
  assert.match(link, /\/portal\/pl_[0-9a-z]+\.\d+\.[0-9a-f]{64}$/);
  const visitor = await browser.newContext({ viewport: { width: 390, height: 844 }, isMobile: true });
  const portal = await visitor.newPage();
  const opened = await portal.goto(link);
  assert.equal(opened.status(), 200);
  assert.equal(await portal.getAttribute("h1", "data-subscription"), "acme-weather");
  const text = await portal.textContent("body");
  assert.ok(!text.includes("globex"), "nothing of the other subscription");
  assert.equal(await portal.locator("svg.chart rect.point").count(), usage.data.length);
  const overflow = await portal.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 0, `the portal is ${overflow}px wider than a phone`);
  await portal.screenshot({ path: `${shots}/portal-phone.png`, fullPage: true });

  check("a portal link reaches nothing else: not the console, not another subscription");
  const consoleFromPortal = await portal.goto(`${base}/console/subscriptions`);
  assert.match(portal.url(), /\/console\/sign-in$/, `${consoleFromPortal.status()}`);
  const other = (await api("POST", "/v1/subscriptions/globex-weather/portal-links", {})).json;
  const [id, expires, signature] = link.split("/portal/")[1].split(".");
  const [otherId, otherExpires] = other.path.split("/portal/")[1].split(".");
  for (const guess of [
    `${otherId}.${expires}.${signature}`,
    `${otherId}.${otherExpires}.${signature}`,
    `${id}.${Number(expires) + 1000}.${signature}`,
    `${id}.${expires}.${"0".repeat(64)}`,
  ]) {
    const answer = await portal.goto(`${base}/portal/${guess}`);
    assert.equal(answer.status(), 404, guess);
    assert.equal(await portal.getAttribute("[data-code]", "data-code"), "invalid_link");
  }

  check("a revoked link is refused");
  await page.goto(`${base}${subscriptionPath}`);
  const linkId = link.split("/portal/")[1].split(".")[0];
  assert.equal(await page.locator("#portal-links tbody tr").count(), 1);
  await page.locator(`tr[data-link="${linkId}"] button.danger`).click();
  await page.waitForURL(`${base}${subscriptionPath}`);
  const revoked = await portal.goto(link);
  assert.equal(revoked.status(), 403);
  assert.equal(await portal.getAttribute("[data-code]", "data-code"), "link_revoked");

  check("a stale link is refused");
  const short = (await api("POST", "/v1/subscriptions/acme-weather/portal-links", { valid_for: "1s" })).json;
  await new Promise((done) => setTimeout(done, 1500));
  const stale = await portal.goto(`${base}${short.path}`);
  assert.equal(stale.status(), 403);
  assert.equal(await portal.getAttribute("[data-code]", "data-code"), "link_expired");

  check("billing runs and gateways show");
  await page.click("text=Gateways");
  assert.equal(await page.locator("tr[data-gateway=edge]").count(), 1);
  await page.screenshot({ path: `${shots}/gateways.png`, fullPage: true });
  await page.click("text=Billing runs");
  await page.screenshot({ path: `${shots}/billing-runs.png`, fullPage: true });

  check("signing out ends the session");
  await page.click("text=Sign out");
  await page.waitForURL(`${base}/console/sign-in`);
  await page.goto(`${base}/console`);
  assert.match(page.url(), /\/console\/sign-in$/);
  console.log("all browser checks passed");
} catch (error) {
  console.error(`FAILED at "${step}": ${error.stack ?? error}`);
  process.exitCode = 1;
} finally {
  await browser.close();
}
