import { execFileSync } from "node:child_process";
import { expect, test, type Page } from "@playwright/test";
import { account, cron, open, sideNav, signIn } from "./support/salvage";

/** `/cron/<job>` as an outside scheduler calls it; the HTTP status. */
/** The nav's count of critical alerts nobody has taken (0 when it shows none). */
async function navCritical(page: Page): Promise<number> {
  const badge = sideNav(page).getByTestId("nav-alert-count").locator(".nav-count-critical");
  return (await badge.count()) === 0 ? 0 : Number(await badge.textContent());
}

test("an operator lands on the alerts page, acknowledges a critical alert with a note, and sees the timeline and the nav count change", async ({ page, baseURL }) => {
  // Three rows queued long ago, as an outage that nobody replayed would leave them;
  // expiry deletes them for good and raises data_expired in the same transaction.
  execFileSync("psql", ["-X", "-q", "-v", "ON_ERROR_STOP=1", process.env.DATABASE_URL ?? "", "-c",
    "insert into events_fallback (organization_id, id, ts, row_json, queued_at) " +
    "select 'org_e2e', gen_random_uuid(), now(), '{}', now() - interval '30 days' from generate_series(1, 3)"]);
  expect(cron(baseURL!, "expire-fallback")).toBe(200);
  expect(cron(baseURL!, "self-monitor")).toBe(200);

  const { email, password } = account("operator");
  await page.goto("/admin/login");
  await page.getByLabel("Email").fill(email);
  await page.getByLabel("Password").fill(password);
  await page.getByRole("button", { name: "Sign in" }).click();
  await expect(page).toHaveURL(/\/admin\/alerts$/);
  await expect(page.getByRole("heading", { level: 1, name: "Alerts" })).toBeVisible();

  await expect.poll(() => navCritical(page)).toBeGreaterThan(0);
  const before = await navCritical(page);
  const row = page.getByTestId("open-alerts").getByRole("row").filter({ hasText: "Expiry deleted 3 queued rows of the events queue" });
  await expect(row).toContainText("critical");
  await row.getByRole("link").click();

  const panel = page.getByTestId("alert-panel");
  await expect(panel.getByTestId("alert-status")).toHaveText("firing");
  await panel.getByLabel("Note (what you are doing about it)").fill("e2e: synthetic rows, checking the exporter");
  await panel.getByRole("button", { name: "Acknowledge with this note" }).click();

  await expect(panel.getByTestId("alert-status")).toHaveText("acknowledged");
  await expect(panel.getByTestId("alert-timeline")).toContainText(`acknowledged by ${email}: e2e: synthetic rows, checking the exporter`);
  await expect(panel.getByTestId("alert-timeline").getByRole("link", { name: /history #\d+/ })).toHaveCount(1);
  await expect.poll(() => navCritical(page)).toBe(before - 1);
  await expect(row).toContainText(`acknowledged by ${email}`);
});

test("a stale acknowledgement is refused with what happened meanwhile, and the note being typed survives the refresh", async ({ page, browser, baseURL }) => {
  execFileSync("psql", ["-X", "-q", "-v", "ON_ERROR_STOP=1", process.env.DATABASE_URL ?? "", "-c",
    "insert into requests_fallback (organization_id, id, ts, row_json, queued_at) " +
    "select 'org_e2e_old', gen_random_uuid(), now(), '{}', now() - interval '30 days' from generate_series(1, 2)"]);
  expect(cron(baseURL!, "expire-fallback")).toBe(200);
  await signIn(page, "admin");
  await open(page, "/admin/alerts");
  const row = page.getByTestId("open-alerts").getByRole("row").filter({ hasText: "queued rows of the requests queue" });
  await row.getByRole("link").click();
  const panel = page.getByTestId("alert-panel");
  const note = panel.getByLabel("Note (what you are doing about it)");
  await note.fill("typed before the other operator");
  // Two refreshes pass; the note is still there.
  await page.waitForTimeout(11_000);
  await expect(note).toHaveValue("typed before the other operator");

  // Meanwhile someone else acknowledges it from another browser.
  const other = await browser.newPage({ baseURL });
  const operator = account("operator");
  await signIn(other, "operator");
  await expect(other).toHaveURL(/\/admin\/alerts$/);
  await other.getByTestId("open-alerts").getByRole("row").filter({ hasText: "queued rows of the requests queue" }).getByRole("link").click();
  await other.getByTestId("alert-panel").getByLabel("Note (what you are doing about it)").fill("mine");
  await other.getByTestId("alert-panel").getByRole("button", { name: "Acknowledge with this note" }).click();
  await expect(other.getByTestId("alert-panel").getByTestId("alert-status")).toHaveText("acknowledged");
  await other.close();

  await panel.getByRole("button", { name: "Acknowledge with this note" }).click();
  await expect(panel.getByRole("alert")).toContainText(`acknowledged by ${operator.email}`);
  await expect(panel.getByRole("alert")).toContainText("while you were typing");
});

test("opened directly, the alerts page loads only the live refresh: a new alert shows up while a note is typed, and ticked alerts are acknowledged together", async ({ page, baseURL }) => {
  const fetched: string[] = [];
  page.on("request", (request) => fetched.push(new URL(request.url()).pathname));
  await signIn(page, "operator");
  await expect(page).toHaveURL(/\/admin\/alerts$/);
  const scripts = fetched.filter((path) => /\.(wasm|js)$/.test(path));
  expect(scripts.sort()).toEqual(["/live/live.js", "/live/live_bg.wasm"]);
  await expect(page.getByTestId("live-status")).toContainText(/Live: refreshed at \d\d:\d\d:\d\d UTC/, { timeout: 12_000 });

  // Someone types in the bulk bar's note while the self-monitor raises something new.
  const note = page.getByLabel("Note (for every selected alert)");
  await note.fill("typed while the list refreshes");
  const key = `org_e2e_live_${Date.now().toString(36)}`;
  execFileSync("psql", ["-X", "-q", "-v", "ON_ERROR_STOP=1", process.env.DATABASE_URL ?? "", "-c",
    "insert into events_fallback (organization_id, id, ts, row_json, queued_at) " +
    `select '${key}', gen_random_uuid(), now(), '{}', now() - interval '30 days' from generate_series(1, 4)`]);
  expect(cron(baseURL!, "expire-fallback")).toBe(200);
  const fresh = page.getByTestId("open-alerts").getByRole("row").filter({ hasText: "Expiry deleted 4 queued rows of the events queue" });
  await expect(fresh).toHaveCount(1, { timeout: 15_000 });
  await expect(note).toHaveValue("typed while the list refreshes");
  expect(fetched.filter((path) => path.endsWith("salvage.wasm"))).toEqual([]);

  // Two alerts ticked, one note, one click: the note is on both alerts' timelines.
  execFileSync("psql", ["-X", "-q", "-v", "ON_ERROR_STOP=1", process.env.DATABASE_URL ?? "", "-c",
    "insert into requests_fallback (organization_id, id, ts, row_json, queued_at) " +
    `select '${key}', gen_random_uuid(), now(), '{}', now() - interval '30 days' from generate_series(1, 2)`]);
  expect(cron(baseURL!, "expire-fallback")).toBe(200);
  const rows = page.getByTestId("open-alerts").locator("tbody tr");
  await expect.poll(() => rows.count(), { timeout: 12_000 }).toBeGreaterThan(1);
  const ids = [await rows.nth(0).getAttribute("data-alert-id"), await rows.nth(1).getAttribute("data-alert-id")];
  const bulkNote = `bulk ${key}`;
  await note.fill(bulkNote);
  await rows.nth(0).getByRole("checkbox").check();
  await rows.nth(1).getByRole("checkbox").check();
  await page.getByRole("button", { name: "Acknowledge selected" }).click();
  await expect(page).toHaveURL(/\/admin\/alerts$/);
  for (const id of ids) {
    await page.goto(`/admin/alerts?alert=${id}`);
    await expect(page.getByTestId("alert-timeline")).toContainText(`acknowledged by ${account("operator").email}: ${bulkNote}`);
  }

  // The console stops answering the refresh: the page keeps what it shows and says since
  // when it is not current; once it answers again, the line is calm again.
  const refreshes = (request: { resourceType(): string }) => request.resourceType() === "fetch";
  await page.route(/\/admin\/alerts/, (route) => (refreshes(route.request()) ? route.abort() : route.continue()));
  await expect(page.getByTestId("live-status")).toContainText(/Not refreshed since \d\d:\d\d:\d\d UTC: the console did not answer/, { timeout: 12_000 });
  await expect(page.getByTestId("open-alerts")).toBeVisible();
  await page.unroute(/\/admin\/alerts/);
  await expect(page.getByTestId("live-status")).toContainText("Live: refreshed at", { timeout: 12_000 });

  // The theme button works without the client too (the live refresh runs it).
  const theme = page.getByRole("button", { name: /^Theme:/ });
  await expect(theme).toHaveText("Theme: system");
  await theme.click();
  await expect(page.locator("html")).toHaveAttribute("data-theme", "light");
  await expect(theme).toHaveText("Theme: light");

  // From here, a link to another page loads the client, and the alerts page reached by a
  // link from it renders in the browser, as before.
  await sideNav(page).getByRole("link", { name: /Queues/ }).click();
  await expect(page.locator("body[data-hydrated]")).toHaveCount(1);
  await sideNav(page).getByRole("link", { name: /Alerts/ }).click();
  await expect(page).toHaveURL(/\/admin\/alerts$/);
  await expect(page.getByTestId("open-alerts")).toBeVisible();
  await expect(page.getByTestId("live-status")).toHaveCount(0);
});

test.describe("with scripts turned off", () => {
  test.use({ javaScriptEnabled: false });

  test("the alerts page says it is not refreshing, and its forms still work", async ({ page }) => {
    await signIn(page, "operator");
    await expect(page).toHaveURL(/\/admin\/alerts$/);
    await expect(page.getByTestId("live-status")).toContainText("Not refreshing");
    const row = page.getByTestId("open-alerts").locator("tbody tr").first();
    await row.getByRole("link").click();
    const panel = page.getByTestId("alert-panel");
    const words = `noted without scripts ${Date.now().toString(36)}`;
    await panel.getByText("Add a note").click();
    await panel.getByRole("form", { name: "Add a note to this alert" }).getByLabel("Note").fill(words);
    await panel.getByRole("button", { name: "Add note" }).click();
    await expect(panel.getByTestId("alert-timeline")).toContainText(words);
  });
});
