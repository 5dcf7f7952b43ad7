// Backups and restores in the browser. Named to run after queues.spec.ts (files run in
// name order on one worker): the in-place ClickHouse restore here ends with a replay of
// the fallback queue, which would drain the rows queues.spec.ts expects to find queued.
import { execFileSync } from "node:child_process";
import { expect, test } from "@playwright/test";
import { open, signIn, unique } from "./support/salvage";

/** Runs SQL on the e2e database as the application role. */
function psql(sql: string): string {
  return execFileSync("psql", ["-X", "-q", "-tA", "-v", "ON_ERROR_STOP=1", process.env.DATABASE_URL ?? "", "-c", sql]).toString().trim();
}

test("an operator backs up both stores and sees them verified, but is offered no restore", async ({ page }) => {
  await signIn(page, "operator");
  await open(page, "/admin/backups");
  await expect(page.getByRole("heading", { level: 1, name: "Backups" })).toBeVisible();
  // The Back up now panel's own reason (an admin also sees the point-in-time form's).
  const backUpNow = page.locator("section").filter({ has: page.getByTestId("backup-now") });
  await backUpNow.getByLabel("Reason (recorded in the history)").fill("e2e: before the drill");
  await page.getByTestId("backup-now").click();
  await expect(page.getByText(/Backup run #\d+ started/)).toBeVisible();
  // The run records one history entry per store once that store's backup is done. Wait
  // for both before reading the catalogue: drills.spec.ts left verified backups behind,
  // which would otherwise stand first in the list until this run's rows appear.
  await expect
    .poll(() => Number(psql("select count(*) from runbook_history where kind = 'backup' and reason = 'e2e: before the drill'")), { timeout: 30_000 })
    .toBeGreaterThanOrEqual(2);

  const catalogue = page.getByRole("table").filter({ has: page.getByRole("columnheader", { name: "Verified" }) });
  await expect(catalogue.getByRole("row").filter({ hasText: "PostgreSQL" }).first()).toContainText("verified", { timeout: 30_000 });
  await expect(catalogue.getByRole("row").filter({ hasText: "ClickHouse" }).first()).toContainText("verified", { timeout: 30_000 });
  await expect(page.getByTestId("store-postgres")).toContainText("within objective");
  const row = catalogue.getByRole("row").filter({ hasText: "PostgreSQL" }).first();
  await expect(row.getByRole("button", { name: "Verify" })).toBeVisible();
  await expect(row.getByRole("button", { name: "Restore…" })).toHaveCount(0);

  // The catalogue synced with the repository's signed manifests, from the page.
  const sync = page.locator("section").filter({ has: page.getByTestId("backup-sync") });
  await sync.getByLabel("Reason (recorded in the history)").fill("e2e: after the backup");
  await page.getByTestId("backup-sync").click();
  await expect(page.getByText(/Sync run #\d+ started/)).toBeVisible();
  await expect(page.getByText("Last synced with the repository just now.", { exact: false })).toBeVisible({ timeout: 15_000 });
});

test("an admin restores into a side database, then restores ClickHouse in place under a freeze shown on every page, and rolls it back", async ({ page, browser }) => {
  await signIn(page, "admin");
  await open(page, "/admin/backups");
  const backUpNow = page.locator("section").filter({ has: page.getByTestId("backup-now") });
  await backUpNow.getByLabel("Reason (recorded in the history)").fill("e2e: a backup to restore");
  await page.getByTestId("backup-now").click();
  await expect(page.getByText(/Backup run #\d+ started/)).toBeVisible();
  const catalogue = page.getByRole("table").filter({ has: page.getByRole("columnheader", { name: "Verified" }) });
  const pgRow = catalogue.getByRole("row").filter({ hasText: "PostgreSQL" }).filter({ hasText: "verified" }).first();
  await expect(pgRow).toBeVisible({ timeout: 30_000 });
  // The run goes on to ClickHouse: wait for it to end, so the catalogue does not gain a
  // row (and move the one about to be clicked) between finding the row and the click.
  await expect(page.getByText(/Backup run #\d+ is running/)).toHaveCount(0, { timeout: 30_000 });

  // Into a side database: the live data is not touched.
  const side = unique("e2e_side").toLowerCase().replace(/[^a-z0-9_]/g, "_");
  await pgRow.getByRole("button", { name: "Restore…" }).click();
  const form = page.getByTestId("restore-panel");
  await expect(form).toContainText("Restore PostgreSQL backup");
  await form.getByLabel("Side database name").fill(side);
  await form.getByLabel("Reason (recorded in the history)").fill("e2e: look before touching live data");
  await form.getByTestId("restore").click();
  await expect(form.getByText(/Restore run #\d+ started/)).toBeVisible();
  const restores = page.getByRole("table").filter({ has: page.getByRole("columnheader", { name: "Into" }) });
  await expect(restores.getByRole("row").filter({ hasText: `side database ${side}` })).toContainText("verified", { timeout: 30_000 });
  try {
    // In place, ClickHouse: the store is frozen while it runs, and every page says so.
    const chRow = catalogue.getByRole("row").filter({ hasText: "ClickHouse" }).filter({ hasText: "verified" }).first();
    await chRow.getByRole("button", { name: "Restore…" }).click();
    await expect(form).toContainText("Restore ClickHouse backup");
    await form.getByRole("radio", { name: /in place/ }).check();
    await expect(form).toContainText("Never rolled back by an in-place restore");
    await form.getByLabel(/Type salvage_e2e to confirm/).fill("salvage_e2e");
    await form.getByLabel("Reason (recorded in the history)").fill("e2e: in-place restore");
    await form.getByTestId("restore").click();
    const other = await browser.newPage();
    await signIn(other, "operator");
    await other.goto("/admin/queues");
    await expect(other.getByTestId("freeze-banner")).toContainText("ClickHouse is frozen for a restore", { timeout: 15_000 });
    const inPlace = restores.getByRole("row").filter({ hasText: "salvage_e2e (in place)" });
    await expect(inPlace).toContainText("verified", { timeout: 30_000 });
    await other.reload();
    await expect(other.getByTestId("freeze-banner")).toHaveCount(0);
    await other.close();

    // Roll back: the live tables kept aside go back.
    await inPlace.getByLabel("Reason for the rollback").fill("e2e: wrong day");
    await inPlace.getByRole("button", { name: "Roll back" }).click();
    await expect(inPlace).toContainText("rolled back", { timeout: 15_000 });
    await expect(inPlace.getByRole("button", { name: "Roll back" })).toHaveCount(0);
  } finally {
    execFileSync("psql", ["-X", "-q", process.env.SALVAGE_E2E_OWNER_URL ?? process.env.DATABASE_URL ?? "", "-c", `drop database if exists ${side} with (force)`]);
  }
});
