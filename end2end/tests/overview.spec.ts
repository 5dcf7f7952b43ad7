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

    link.cut();
    await expect(storesSummary(page)).toContainText("ClickHouse down.");
    await expect(storeRow(page, "ClickHouse")).toContainText("Down");
    await expect(storeRow(page, "ClickHouse")).toContainText("unknown");
    await expect(storeRow(page, "PostgreSQL")).toContainText("Healthy");

    link.restore();
    await expectAllStoresHealthy(page);
  } finally {
    salvage.stop();
    await link.close();
  }
});

test("the theme toggle switches to dark and is remembered", async ({ page }) => {
  await signIn(page, "manager");
  await page.goto("/admin");
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

test("the console is usable by keyboard: the skip link leads to the content", async ({ page }) => {
  await signIn(page, "manager");
  await page.goto("/admin");

  await page.keyboard.press("Tab");
  const skip = page.getByRole("link", { name: "Skip to content" });
  await expect(skip).toBeFocused();
  await page.keyboard.press("Enter");

  await expect(page).toHaveURL(/#main$/);
});
