import { expect, test } from "@playwright/test";
import { cron, open, rememberSecret, sideNav, signIn, unique } from "./support/salvage";

// An admin adds a webhook whose endpoint is down (the server's demo receiver), the
// service enqueues two events, the worker dead-letters them; the breakdown shows them,
// a dry run counts them, and a redrive sends them again with its progress recorded.
test("dead letters: breakdown, dry run and a redrive", async ({ page, baseURL }) => {
  await signIn(page, "admin");
  await sideNav(page).getByRole("link", { name: "Webhooks" }).click();
  const name = unique("e2e billing");
  await page.getByLabel("URL").fill(`${baseURL}/demo/webhook-receiver/down`);
  await page.getByLabel("Description").fill(name);
  await page.getByLabel("Event types (comma-separated)").fill("order.paid");
  await page.getByLabel("Retries").fill("0");
  await page.getByRole("button", { name: "Add webhook" }).click();
  const added = page.getByTestId("webhook-secret");
  await expect(added).toContainText("Its signing secret, shown only now");
  rememberSecret(await added.locator("code").textContent());
  const id = Number((await added.textContent())!.match(/Webhook (\d+) added/)![1]);

  await sideNav(page).getByRole("link", { name: "Ingest keys" }).click();
  await page.getByLabel("Name (who will use it)").fill("e2e webhooks");
  await page.getByLabel("Organisation (or * for all)").fill("*");
  await page.getByRole("button", { name: "Create key" }).click();
  const key = await page.getByTestId("new-key").locator("code").textContent();
  rememberSecret(key);
  for (const n of [1, 2]) {
    const answer = await page.request.post("/ingest/webhook-events", {
      headers: { Authorization: `Bearer ${key}` },
      data: { event_type: "order.paid", payload: { order: n }, idempotency_key: `${name}-${n}` },
    });
    expect(answer.status()).toBe(202);
  }
  expect(cron(baseURL!, "deliver-webhooks")).toBe(200);

  await open(page, "/admin/dlq");
  const row = page.locator("table.dlq-breakdown tbody tr").filter({ hasText: name });
  await expect(row).toContainText("exhausted");
  await expect(row.locator("td.num")).toHaveText("2");
  await expect(row).toContainText("503");
  await row.getByRole("link", { name: new RegExp(name) }).click();
  await expect(page).toHaveURL(new RegExp(`webhook=${id}&reason=exhausted`));
  await expect(page.getByTestId("dead-letters").locator("tbody tr")).toHaveCount(2);

  await page.getByTestId("dry-run").click();
  const dry = page.getByTestId("dry-run-result");
  await expect(dry.locator(".metric-value")).toHaveText("2");
  await expect(dry).toContainText(`webhook ${id}, reason exhausted`);

  // The redrive form's reason (the purge beside it asks for its own).
  await dry
    .getByRole("form", { name: "Redrive" })
    .getByLabel("Reason (recorded in the history)")
    .fill("e2e: endpoint fixed");
  await page.getByTestId("redrive").click();
  await expect(page.getByText(/Redrive #\d+ started/)).toBeVisible();
  const redrive = page.getByTestId("redrives").locator("tbody tr").first();
  await expect(redrive).toContainText("finished", { timeout: 15_000 });
  await expect(redrive).toContainText("2 / 2");
  await expect(redrive).toContainText("e2e: endpoint fixed");

  // Sent again, with the same ids; the endpoint is still down, so they come back.
  expect(cron(baseURL!, "deliver-webhooks")).toBe(200);
  await open(page, `/admin/dlq?webhook=${id}`);
  await page.getByTestId("dead-letters").getByRole("link").first().click();
  await expect(page.getByTestId("attempts").locator("tbody tr")).toHaveCount(2);
  await expect(page.getByTestId("attempts")).toContainText("redrive #");
});
