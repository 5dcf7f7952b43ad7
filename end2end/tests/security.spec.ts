import { expect, test, type Page } from "@playwright/test";
import { sideNav, signIn } from "./support/salvage";

/** Everything the browser complains about on `page`: console errors (a CSP refusal, a
 * hydration panic), uncaught exceptions, and Content-Security-Policy violations. */
async function watchForTrouble(page: Page) {
  const trouble: string[] = [];
  page.on("console", (message) => {
    if (message.type() === "error") trouble.push(`console: ${message.text()}`);
  });
  page.on("pageerror", (error) => trouble.push(`exception: ${error.message}`));
  await page.addInitScript(() => {
    document.addEventListener("securitypolicyviolation", (event) => {
      console.error(`CSP violation: ${event.violatedDirective} blocked ${event.blockedURI}`);
    });
  });
  return trouble;
}

const PAGES = [
  "/admin",
  "/admin/alerts",
  "/admin/backups",
  "/admin/drills",
  "/admin/dlq",
  "/admin/settings/webhooks",
  "/admin/migrations",
  "/admin/alerts?alert=1",
  "/admin/alerts?view=resolved",
  "/admin/alerts?view=silences",
  "/admin/history",
  "/admin/history/1",
  "/admin/queues",
  "/admin/crons",
  "/admin/settings/users",
  "/admin/settings/ingest-keys",
  "/admin/settings/cron-secret",
  "/admin/account",
];

test("every page loads and hydrates under its Content-Security-Policy without a complaint", async ({ page }) => {
  const trouble = await watchForTrouble(page);
  const response = await page.goto("/admin/login");
  expect(response?.headers()["content-security-policy"]).toContain("'nonce-");
  await signIn(page, "admin");

  for (const path of PAGES) {
    const response = await page.goto(path);
    expect(response?.status(), path).toBe(200);
    expect(response?.headers()["content-security-policy"], path).toContain("script-src 'self' 'nonce-");
    await page.waitForLoadState("networkidle");
  }

  // Hydrated: the side navigation moves between pages in the browser, with no new load.
  let loads = 0;
  page.on("load", () => loads++);
  await sideNav(page).getByRole("link", { name: "History" }).click();
  await expect(page.getByRole("heading", { level: 1, name: "Runbook history" })).toBeVisible();
  await sideNav(page).getByRole("link", { name: "Queues" }).click();
  await expect(page).toHaveURL(/\/admin\/queues$/);
  expect(loads, "client-side navigation, so the app hydrated").toBe(0);

  expect(trouble).toEqual([]);
});
