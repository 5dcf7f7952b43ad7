// Restore drills in the browser: an operator runs one and follows its steps; a manager
// lands on the drills page, is offered no Run button, and exports the drill history.
import { expect, test } from "@playwright/test";
import { cron, open, signIn } from "./support/salvage";

test("an operator runs a drill and watches it restore, verify and tear down both stores", async ({ page, baseURL }) => {
  // With pgBackRest set up the drill also restores PostgreSQL twice into side clusters:
  // minutes on a busy machine. A hang guard, not a speed claim.
  test.setTimeout(300_000);
  // A drill restores the latest verified backups: take them first, as the nightly job does.
  expect(cron(baseURL!, "backup")).toBe(200);
  await signIn(page, "operator");
  await open(page, "/admin/drills");
  await expect(page.getByRole("heading", { level: 1, name: "Drills" })).toBeVisible();
  await page.getByLabel("Reason (recorded in the history)").fill("e2e: quarterly drill");
  await page.getByTestId("run-drill").click();
  await expect(page.getByText(/Drill run #\d+ started/)).toBeVisible();

  const history = page.getByTestId("drill-history");
  const row = history.getByRole("row").filter({ hasText: "operator@e2e.test" }).first();
  await expect(row).toContainText("passed", { timeout: 270_000 });
  await row.getByText(/\d+ steps/).click();
  const steps = row.getByRole("table");
  for (const step of ["fetch", "restore", "verify", "queries", "teardown"]) {
    await expect(steps.getByRole("cell", { name: step, exact: true }).first()).toBeVisible();
  }
  await expect(steps).toContainText("rows and schema match the manifest");
  // The browser tests' ClickHouse may hold no requests yet: the step says so.
  await expect(steps).toContainText(/sampled ids found by id|no rows to sample/);
  await expect(page.getByTestId("objectives")).toContainText("PostgreSQL");
  await expect(page.getByTestId("rto-clickhouse")).toContainText("within target");
  // Operators do not export; managers and admins do.
  await expect(page.getByTestId("drill-export")).toHaveCount(0);
});

test("a manager lands on the drills page, has no Run button, and exports the drill history", async ({ page }) => {
  await signIn(page, "manager");
  await expect(page).toHaveURL(/\/admin\/drills$/);
  await expect(page.getByRole("heading", { level: 1, name: "Drills" })).toBeVisible();
  await expect(page.getByTestId("drill-history")).toContainText("passed");
  await expect(page.getByTestId("run-drill")).toHaveCount(0);
  // Each store's cadences, from its objectives.
  const due = page.getByTestId("due");
  for (const store of ["PostgreSQL", "ClickHouse"]) {
    await expect(due).toContainText(`${store}: functional drill (every 90 days)`);
    await expect(due).toContainText(`${store}: tabletop exercise (every 30 days)`);
  }
  await expect(page.getByTestId("objectives")).toContainText("Drill every");

  const csv = page.waitForEvent("download");
  await page.getByTestId("drill-export").getByRole("link", { name: "CSV" }).click();
  const file = await csv;
  expect(file.suggestedFilename()).toMatch(/^salvage-history-.*\.csv$/);
  const text = await (await file.createReadStream()).toArray();
  const body = Buffer.concat(text.map((chunk) => Buffer.from(chunk))).toString();
  expect(body).toContain("Restore drill");
  expect(body).not.toContain("History exported");
});
