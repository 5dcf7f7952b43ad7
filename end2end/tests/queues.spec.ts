import { expect, test } from "@playwright/test";
import { rememberSecret, sideNav, signIn } from "./support/salvage";

test("a manager sees the queues but no replay control", async ({ page }) => {
  await signIn(page, "manager");
  await sideNav(page).getByRole("link", { name: "Queues" }).click();

  await expect(page.getByRole("heading", { level: 1, name: "Fallback queues" })).toBeVisible();
  await expect(page.getByRole("columnheader", { name: "Oldest row" })).toBeVisible();
  await expect(page.getByRole("button", { name: "Replay now" })).toHaveCount(0);
  await expect(sideNav(page).getByRole("link", { name: "Ingest keys" })).toHaveCount(0);
});

test("an operator replays the parked rows and watches the queue drain", async ({ page }) => {
  await signIn(page, "operator");
  await sideNav(page).getByRole("link", { name: "Queues" }).click();
  await expect(page.getByTestId("depth-requests")).toHaveText("250");
  await expect(page.getByTestId("queues-summary")).toContainText("250 rows are waiting for ClickHouse");

  await page.getByLabel("Reason (recorded in the history)").fill("e2e: ClickHouse is back");
  await page.getByRole("button", { name: "Replay now" }).click();

  await expect(page.getByTestId("depth-requests")).toHaveText("0", { timeout: 20_000 });
  const lastRun = page.getByTestId("replay-runs").locator("tbody tr").first();
  await expect(lastRun).toContainText("succeeded");
  await expect(lastRun).toContainText("manual");
  await expect(lastRun.locator("td").nth(5)).toHaveText("250");
  await expect(page.getByTestId("queues-summary")).toContainText("Both queues are empty");
});

test("an admin creates an ingest key and sees its secret once", async ({ page }) => {
  await signIn(page, "admin");
  await sideNav(page).getByRole("link", { name: "Ingest keys" }).click();
  await page.getByLabel("Name (who will use it)").fill("e2e gateway");
  await page.getByLabel("Organisation (or * for all)").fill("org_e2e");
  await page.getByRole("button", { name: "Create key" }).click();

  const secret = page.getByTestId("new-key").locator("code");
  await expect(secret).toHaveText(/^sgk_[0-9a-f]{64}$/);
  const value = await secret.textContent();
  rememberSecret(value);
  const answer = await page.request.post("/ingest/events", {
    headers: { Authorization: `Bearer ${value}` },
    data: [{ id: crypto.randomUUID(), ts: new Date().toISOString(), trace_id: "t-e2e", span_id: "s-e2e",
             event_type: "trace", name: "e2e" }],
  });
  expect(answer.status()).toBe(200);
  await page.reload();
  await expect(page.getByRole("cell", { name: "e2e gateway" })).toBeVisible();
  await expect(page.getByTestId("new-key")).toHaveCount(0);
});
