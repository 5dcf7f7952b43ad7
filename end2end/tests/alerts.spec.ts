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
