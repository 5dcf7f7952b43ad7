import { expect, test } from "@playwright/test";
import { expectAllStoresHealthy, FaultyLink, signIn, startSalvage, storeRow, storesSummary } from "./support/salvage";

test("the overview shows PostgreSQL and ClickHouse healthy", async ({ page }) => {
  await signIn(page, "operator");
  await page.goto("/admin");

  await expect(page.getByRole("heading", { level: 1, name: "Overview" })).toBeVisible();
  await expect(page.getByRole("navigation", { name: "Console" }).getByRole("link", { name: "Overview" }))
    .toHaveAttribute("aria-current", "page");
  await expectAllStoresHealthy(page);
  await expect(storeRow(page, "ClickHouse")).toContainText(/\d+\.\d ms/);
});

test("the overview gives each store a verdict in words, and each figure leads to its page", async ({ page }) => {
  await signIn(page, "manager");
  await page.goto("/admin");

  // Served plainly: no client, the live refresh keeps it current.
  await expect(page.locator("body[data-hydrated]")).toHaveCount(0);
  const verdicts = page.getByTestId("verdicts").locator(":scope > li");
  await expect(verdicts).toHaveCount(2);
  for (const [store, name] of [["postgres", "PostgreSQL"], ["clickhouse", "ClickHouse"]]) {
    const line = page.getByTestId("verdicts").locator(`li[data-store="${store}"]`);
    await expect(line).toContainText(name);
    // Either recoverable within the objectives, or at risk with each reason in a sentence.
    const verdict = await line.getAttribute("data-verdict");
    if (verdict === "ok") {
      await expect(line).toContainText(/Recoverable.*can be recovered within its objectives \(RPO .+, RTO .+\)\./);
    } else {
      await expect(line).toContainText("At risk");
      await expect(line.locator("ul.reasons > li").first()).toHaveText(/\.$/);
    }
  }
  const figures = page.getByTestId("posture");
  await expect(figures.getByRole("columnheader", { name: "PostgreSQL" })).toBeVisible();
  await expect(figures.getByRole("rowheader", { name: "Would lose now" })).toBeVisible();
  await expect(page.getByTestId("system").getByRole("rowheader", { name: "Open alerts" })).toBeVisible();
  await expect(page.getByTestId("live-status")).toContainText("Live", { timeout: 15_000 });

  await figures.getByRole("link", { name: "Last drill" }).click();
  await expect(page).toHaveURL(/\/admin\/drills$/);
});

test("the overview follows ClickHouse going down and coming back, without a reload", async ({ page }) => {
  const clickhouse = new URL(process.env.CLICKHOUSE_URL ?? "http://127.0.0.1:18123");
  const link = new FaultyLink({ host: clickhouse.hostname, port: Number(clickhouse.port) });
  const linkPort = await link.listen();
  const salvage = await startSalvage({
    SALVAGE_ADDR: "127.0.0.1:3108",
    SALVAGE_PUBLIC_URL: "http://127.0.0.1:3108",
    CLICKHOUSE_URL: `http://127.0.0.1:${linkPort}`,
  });
  try {
    await signIn(page, "operator", salvage.url);
    await page.goto(`${salvage.url}/admin`);
    await expectAllStoresHealthy(page);

    // The live refresh reloads the figures every 5 s: a change shows within two turns.
    link.cut();
    await expect(storesSummary(page)).toContainText("ClickHouse down.", { timeout: 20_000 });
    await expect(storeRow(page, "ClickHouse")).toContainText("Down");
    await expect(storeRow(page, "ClickHouse")).toContainText("unknown");
    await expect(storeRow(page, "PostgreSQL")).toContainText("Healthy");

    link.restore();
    await expect(storesSummary(page)).toContainText("All stores healthy.", { timeout: 20_000 });
    await expectAllStoresHealthy(page);
  } finally {
    salvage.stop();
    await link.close();
  }
});

test("the theme toggle switches to dark and is remembered", async ({ page }) => {
  await signIn(page, "manager");
  // A page with the client (the plain pages' toggle is the live refresh's, see alerts).
  await page.goto("/admin/queues");
  const toggle = page.getByRole("button", { name: /Theme:/ });
  await expect(toggle).toHaveText("Theme: system");
  // The toggle is the client's: a click before the page hydrates does nothing (a busy
  // machine can take seconds to hydrate). Each click is waited for, as a person would.
  await expect(page.locator("body[data-hydrated]")).toHaveCount(1);

  await toggle.click();
  await expect(toggle).toHaveText("Theme: light");
  await toggle.click();

  await expect(toggle).toHaveText("Theme: dark");
  await expect(page.locator("html")).toHaveAttribute("data-theme", "dark");
  await page.reload();
  await expect(page.locator("html")).toHaveAttribute("data-theme", "dark");
  await expect(page.getByRole("button", { name: /Theme:/ })).toHaveText("Theme: dark");
});

test.describe("with scripts turned off", () => {
  test.use({ javaScriptEnabled: false });

  test("the overview shows the posture whole and says it is not refreshing", async ({ page }) => {
    await signIn(page, "operator");
    await page.goto("/admin");
    await expect(page.getByTestId("live-status")).toContainText("Not refreshing");
    await expect(page.getByTestId("verdicts").locator(":scope > li")).toHaveCount(2);
    await expectAllStoresHealthy(page);
  });
});

test("the console is usable by keyboard: the skip link leads to the content", async ({ page }) => {
  await signIn(page, "manager");
  await page.goto("/admin");

  await page.keyboard.press("Tab");
  const skip = page.getByRole("link", { name: "Skip to content" });
  await expect(skip).toBeFocused();
  await page.keyboard.press("Enter");

  await expect(page).toHaveURL(/#main$/);
});
