import { expect, test } from "@playwright/test";
import { cron, open, sideNav, signIn } from "./support/salvage";

// The e2e database holds 3,000 webhook events stored as an older version stored them
// (no payload size), so the payload-size backfill has real work; scripts/e2e.sh runs it
// in chunks of 100 with a pause between chunks, slow enough to watch.
test("an operator watches a background migration run, pauses it and lets it finish", async ({ page, baseURL }) => {
  await signIn(page, "operator");
  await sideNav(page).getByRole("link", { name: "Migrations" }).click();
  await expect(page.getByRole("heading", { level: 1, name: "Migrations" })).toBeVisible();
  await expect(page.getByTestId("schema-banner")).toContainText("as this binary expects");
  const row = page.locator('tr[data-migration="webhook_event_payload_bytes"]');
  await expect(row).toContainText("pending");
  await expect(page.getByTestId("upgrades")).toContainText("fresh database");

  // Start a run as an outside scheduler would, and watch it from the page.
  const run = page.request.post(`${baseURL}/cron/run-background-migrations`, {
    headers: { Authorization: `Bearer ${process.env.E2E_CRON_SECRET ?? ""}` },
    timeout: 120_000,
  });
  await open(page, "/admin/migrations");
  await expect(row).toContainText("running", { timeout: 15_000 });
  await expect(row).toContainText("of 3,000 rows");
  await expect(row.locator("progress")).toHaveCount(1);
  await expect(row).toContainText("rows/s", { timeout: 15_000 });

  await page.getByTestId("migration-name").selectOption("webhook_event_payload_bytes");
  await page.getByTestId("migration-action").selectOption("pause");
  await page.getByLabel("Reason (recorded in the history)").fill("e2e: the 09:00 peak");
  await page.getByTestId("change-migration").click();
  await expect(page.getByText("Done: the migration is now paused.")).toBeVisible();
  expect((await run).status()).toBe(200);
  await expect(row).toContainText("paused", { timeout: 15_000 });
  await expect(row).toContainText("e2e: the 09:00 peak");
  const done = Number((await row.locator(".progress-cell .small").textContent())!.split(" of ")[0].replace(/,/g, ""));
  expect(done).toBeGreaterThan(0);
  expect(done).toBeLessThan(3000);

  await page.getByTestId("migration-action").selectOption("resume");
  await page.getByLabel("Reason (recorded in the history)").fill("e2e: peak over");
  await page.getByTestId("change-migration").click();
  await expect(page.getByText("Done: the migration is now pending.")).toBeVisible();
  expect(cron(baseURL!, "run-background-migrations")).toBe(200);
  await expect(row).toContainText("succeeded", { timeout: 15_000 });
  await expect(row).toContainText("3,000 of 3,000 rows (100 %)");
});

test("a manager reads the migrations but is offered no controls", async ({ page }) => {
  await signIn(page, "manager");
  await open(page, "/admin/migrations");
  await expect(page.getByTestId("schema-migrations")).toContainText("background migrations and upgrades");
  await expect(page.getByTestId("change-migration")).toHaveCount(0);
});
