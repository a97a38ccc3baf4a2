// The dashboard in a real headless Chromium (Debian's /usr/bin/chromium,
// driven by playwright-core; no browser is ever downloaded). Run by
// tests/e2e/dashboard_test.py, which starts a two-node cluster whose burst
// begins a few seconds after this script starts, with one dead letter:
//
//   node dashboard_test.js URL TOKEN DEAD_KEY SCREENSHOT
//
// Checks: no console errors; both members and all 256 shards shown; the
// deliveries-per-second figure moves during the burst; a crash switched on
// through the test hook shows as a restart in the tree; the dead letter is
// refused without the admin token (401 shown) and re-driven with it. Saves a
// screenshot. Every wait has a deadline; exits non-zero on the first failure.
"use strict";
const { chromium } = require("playwright-core");

const [url, token, deadKey, screenshot] = process.argv.slice(2);
const problems = [];
// Chromium logs a refused request as a console error: the one refusal the
// test provokes on purpose is not a problem.
let refusalExpected = false;

function check(ok, what) {
  if (!ok) throw new Error("failed: " + what);
  console.log("ok: " + what);
}

async function main() {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
  });
  try {
    const page = await browser.newPage({ viewport: { width: 1500, height: 1300 } });
    page.setDefaultTimeout(30000);
    page.on("console", (m) => {
      if (m.type() !== "error") return;
      if (refusalExpected && /status of 401/.test(m.text())) {
        refusalExpected = false;
        return;
      }
      problems.push("console: " + m.text());
    });
    page.on("pageerror", (e) => problems.push("page error: " + e.message));
    await page.goto(url + "/dashboard");

    await page.waitForFunction(() => document.querySelectorAll("#members tbody tr").length === 2);
    const members = await page.$$eval("#members tbody tr", (rows) => rows.map((r) => r.dataset.member));
    check(members.sort().join(",") === "n1,n2", `both members listed (${members})`);
    await page.waitForFunction(() => {
      const cells = [...document.querySelectorAll("#shard-grid div")];
      return cells.length === 256 && cells.every((c) => c.dataset.owner === "n1" || c.dataset.owner === "n2");
    });
    const owners = await page.$$eval("#shard-grid div", (cells) => new Set(cells.map((c) => c.dataset.owner)).size);
    check(owners === 2, "all 256 shards shown, owned by the two members");
    check(/live/.test(await page.textContent("#transport")), "updates arrive as server-sent events");

    await page.waitForFunction(() => Number(document.getElementById("deliveries-per-second").textContent) > 0,
                               null, { timeout: 60000 });
    const rate = Number(await page.textContent("#deliveries-per-second"));
    check(rate > 0, `deliveries per second moves during the burst (${rate}/s)`);

    const crash = await fetch(url + "/v1/admin/crash", {
      method: "POST",
      headers: { "Content-Type": "application/json", Authorization: "Bearer " + token },
      body: JSON.stringify({ actor: "delivery" }),
    });
    check(crash.status === 202, "the test hook crashed the delivery actor");
    await page.waitForFunction(() => {
      const li = document.querySelector('#tree li[data-actor="delivery"]');
      return li && Number(li.dataset.restarts) >= 1;
    });
    check(true, "the crash shows as a restart of delivery in the supervision tree");

    await page.waitForSelector(`button[data-redrive="${deadKey}"]`);
    refusalExpected = true;
    await page.click(`button[data-redrive="${deadKey}"]`);
    await page.waitForFunction(() => /401/.test(document.getElementById("redrive-status").textContent));
    check(true, "re-drive without the admin token is refused (401)");
    await page.fill("#admin-token", token);
    await page.click(`button[data-redrive="${deadKey}"]`);
    await page.waitForFunction((key) => document.getElementById("redrive-status").textContent === "re-driven: " + key,
                               deadKey);
    check(true, "the dead letter is re-driven from the page with the token");

    await page.screenshot({ path: screenshot, fullPage: true });
    check(problems.length === 0, "no console errors: " + problems.join("; "));
  } finally {
    await browser.close();
  }
}

main().catch((e) => {
  console.error(e.stack || String(e));
  if (problems.length) console.error(problems.join("\n"));
  process.exit(1);
});
