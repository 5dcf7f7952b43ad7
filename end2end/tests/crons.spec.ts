import { execFileSync } from "node:child_process";
import { expect, test } from "@playwright/test";
import { rememberSecret, sideNav, signIn } from "./support/salvage";

/** `curl` of `/cron/<job>` with `secret` as the bearer token; the HTTP status. */
function curlCron(baseURL: string, job: string, secret: string): number {
  const status = execFileSync("curl", [
    "-s", "-o", "/dev/null", "-w", "%{http_code}",
    "-H", `Authorization: Bearer ${secret}`,
    `${baseURL}/cron/${job}`,
  ]);
  return Number(status.toString());
}

test("an admin rotates the cron secret, copies it, and old and new both work in the grace window", async ({ page, context, baseURL }) => {
  const old = process.env.E2E_CRON_SECRET ?? "";
  expect(old.length).toBeGreaterThan(15);
  await context.grantPermissions(["clipboard-read", "clipboard-write"]);
  await signIn(page, "admin");
  await sideNav(page).getByRole("link", { name: "Cron secret" }).click();
  await expect(page.getByRole("heading", { level: 1, name: "Cron secret" })).toBeVisible();
  await expect(page.getByTestId("cron-secrets").getByTestId("secret-state")).toHaveText(["current"]);

  await page.getByLabel("Reason (recorded in the history)").fill("e2e: quarterly rotation");
  await page.getByRole("button", { name: "Rotate" }).click();
  const field = page.getByTestId("secret-value");
  await expect(field).toHaveValue(/^sgc_[0-9a-f]{64}$/);
  const secret = await field.inputValue();
  rememberSecret(secret);
  await expect(page.getByTestId("header-line")).toHaveText(`Authorization: Bearer ${secret}`);

  await page.getByTestId("copy-secret").click();
  await expect(page.getByTestId("copy-secret")).toHaveText("Copied");
  const copied = await page.evaluate(() => navigator.clipboard.readText());
  expect(copied).toBe(secret);

  expect(curlCron(baseURL!, "expire-fallback", copied)).toBe(200);
  expect(curlCron(baseURL!, "expire-fallback", old)).toBe(200);
  expect(curlCron(baseURL!, "expire-fallback", "sgc_not-a-secret-at-all")).toBe(401);

  // After a reload the secret is gone from the page; the list shows both secrets and
  // that curl used them.
  await page.reload();
  await expect(page.getByTestId("new-cron-secret")).toHaveCount(0);
  const states = page.getByTestId("cron-secrets").getByTestId("secret-state");
  await expect(states.nth(0)).toHaveText("current");
  await expect(states.nth(1)).toHaveText("in grace");
  await expect(page.getByTestId("cron-secrets")).toContainText("curl/");
});

test("a manager sees the cron secrets but no rotate control, and the server refuses the rotation", async ({ page, baseURL }) => {
  await signIn(page, "manager");
  await sideNav(page).getByRole("link", { name: "Cron secret" }).click();
  await expect(page.getByRole("heading", { level: 1, name: "Cron secret" })).toBeVisible();
  await expect(page.getByTestId("cron-secrets")).toBeVisible();
  await expect(page.getByRole("button", { name: "Rotate" })).toHaveCount(0);
  await expect(page.getByRole("button", { name: "End grace now" })).toHaveCount(0);

  const answer = await page.request.post("/api/settings/cron-secret/rotate", {
    form: { grace_hours: "24", reason: "trying anyway" },
    headers: { Origin: baseURL! },
  });
  expect(answer.status()).toBe(403);
  expect(await answer.text()).toContain("only admins can");
});

test("an operator sees every job's figures and runs one now", async ({ page }) => {
  await signIn(page, "operator");
  await sideNav(page).getByRole("link", { name: "Crons" }).click();
  await expect(page.getByRole("heading", { level: 1, name: "Scheduled jobs" })).toBeVisible();
  const jobs = page.getByTestId("cron-jobs");
  await expect(jobs.locator("tbody tr")).toHaveCount(13);
  // pgBackRest's backups, the side-cluster janitor and the catalogue's sync with the
  // repository are scheduled jobs like the rest.
  await expect(jobs.locator('tr[data-job="backup-sync"]')).toBeVisible();
  await expect(jobs.locator('tr[data-job="pitr-backup"]')).toBeVisible();
  await expect(jobs.locator('tr[data-job="pitr-side-janitor"]')).toBeVisible();
  await expect(jobs.locator('tr[data-job="replay-fallback"]')).toContainText("every 5 min");
  await expect(jobs.locator(".hour-strip").first().locator(".hour")).toHaveCount(24);

  await page.getByTestId("run-job").selectOption("expire-fallback");
  await page.getByLabel("Reason (recorded in the history)").fill("e2e: checking expiry");
  await page.getByRole("button", { name: "Run now" }).click();
  const latest = page.getByTestId("cron-runs").locator("tbody tr").first();
  await expect(latest).toContainText("expire-fallback");
  await expect(latest).toContainText("manual");
  await expect(latest).toContainText("succeeded");
  await expect(latest).toContainText("operator@e2e.test");
});
