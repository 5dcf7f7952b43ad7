import { expect, test } from "@playwright/test";
import { account, open, rememberSecret, sideNav, signIn, unique } from "./support/salvage";

test("an anonymous visit goes to the sign-in page and comes back after it", async ({ page }) => {
  await page.goto("/admin/history?kind=drill");

  await expect(page).toHaveURL(/\/admin\/login\?next=/);
  await signIn(page, "manager");

  await expect(page).toHaveURL(/\/admin\/history\?kind=drill$/);
  await expect(page.getByRole("heading", { level: 1, name: "Runbook history" })).toBeVisible();
});

test("a wrong password gets one plain message and no session", async ({ page }) => {
  await page.goto("/admin/login");
  await page.getByLabel("Email").fill(account("operator").email);
  await page.getByLabel("Password").fill("definitely not it");
  await page.getByRole("button", { name: "Sign in" }).click();

  await expect(page.getByRole("alert")).toHaveText("That email and password do not match an active account.");
  await page.goto("/admin");
  await expect(page).toHaveURL(/\/admin\/login/);
});

test("the sign-in page loads no WASM and no script; the page after it hydrates", async ({ page }) => {
  const fetched: string[] = [];
  page.on("request", (request) => fetched.push(new URL(request.url()).pathname));
  await page.goto("/admin/login?next=/admin/history");
  await expect(page.getByRole("button", { name: "Sign in" })).toBeVisible();
  expect(fetched.filter((path) => /\.(wasm|js)$/.test(path))).toEqual([]);

  await signIn(page, "manager");
  await expect(page).toHaveURL(/\/admin\/history$/);
  await expect(page.locator("body[data-hydrated]")).toHaveCount(1);
  expect(fetched.some((path) => path.endsWith(".wasm"))).toBe(true);
});

test.describe("with scripts turned off", () => {
  test.use({ javaScriptEnabled: false });

  test("the sign-in form still signs in, and a wrong password is still said", async ({ page }) => {
    const { email, password } = account("operator");
    await page.goto("/admin/login?next=/admin/history");
    await page.getByLabel("Email").fill(email);
    await page.getByLabel("Password").fill("definitely not it");
    await page.getByRole("button", { name: "Sign in" }).click();
    await expect(page.getByRole("alert")).toHaveText("That email and password do not match an active account.");

    await page.getByLabel("Email").fill(email);
    await page.getByLabel("Password").fill(password);
    await page.getByRole("button", { name: "Sign in" }).click();
    await expect(page).toHaveURL(/\/admin\/history$/);
    await expect(page.getByRole("heading", { level: 1, name: "Runbook history" })).toBeVisible();
  });
});

test("an operator sees no user management, no export and no chain verification", async ({ page }) => {
  await signIn(page, "operator");

  await expect(sideNav(page).getByRole("link", { name: "History" })).toBeVisible();
  await expect(sideNav(page).getByRole("link", { name: "Users" })).toHaveCount(0);
  await open(page, "/admin/history");
  await expect(page.getByTestId("last-verification")).toBeVisible();
  await expect(page.getByRole("button", { name: "Verify chain" })).toHaveCount(0);
  await expect(page.getByRole("link", { name: "Export CSV" })).toHaveCount(0);
  await page.goto("/admin/settings/users");
  await expect(page.getByRole("alert")).toContainText("cannot manage users; only admins can");
  await expect(page.getByRole("button", { name: /Disable / })).toHaveCount(0);
  await expect(page.getByRole("form", { name: "Add a user" })).toHaveCount(0);
});

test("a manager reads and exports the history but sees no admin controls", async ({ page }) => {
  await signIn(page, "manager");

  await expect(sideNav(page).getByRole("link", { name: "Users" })).toHaveCount(0);
  await open(page, "/admin/history");
  await expect(page.getByRole("link", { name: "Export CSV" })).toBeVisible();
  const download = page.waitForEvent("download");
  await page.getByRole("link", { name: "Export Markdown" }).click();
  expect((await download).suggestedFilename()).toMatch(/^salvage-history-.*\.md$/);
  await page.getByRole("button", { name: "Verify chain" }).click();
  await expect(page.getByTestId("chain-result")).toContainText("Chain intact");
  await page.reload();
  await expect(page.getByTestId("last-verification")).toContainText("by manager@e2e.test: intact");
});

test("an admin adds a user, whose temporary password is shown once", async ({ page }) => {
  await signIn(page, "admin");
  await sideNav(page).getByRole("link", { name: "Users" }).click();
  const email = `${unique("new").replace(" ", "-")}@e2e.test`;

  const form = page.getByRole("form", { name: "Add a user" });
  await form.getByLabel("Email").fill(email);
  await form.getByLabel("Role").selectOption("manager");
  await form.getByLabel("Reason (optional, recorded in the history)").fill("joins the on-call rota");
  await form.getByRole("button", { name: "Add user" }).click();

  await expect(page.getByTestId("temporary-password")).toContainText(email);
  rememberSecret(await page.getByTestId("temporary-password").locator("code").textContent());
  const row = page.getByRole("row").filter({ hasText: email });
  await expect(row).toContainText("temporary password");
  await expect(row.getByLabel(`Role for ${email}`)).toHaveValue("manager");
  await page.reload();
  await expect(page.getByTestId("temporary-password")).toHaveCount(0);
});

test("an operator declares an incident, a manager adds a note, both find it by filtering", async ({ browser }) => {
  const title = unique("Fallback queue growing");
  const word = title.split(" ").pop()!;

  const operatorContext = await browser.newContext();
  const operator = await operatorContext.newPage();
  await signIn(operator, "operator");
  await open(operator, "/admin/history");
  await operator.getByText("Declare an incident").click();
  const form = operator.getByRole("form", { name: "Declare an incident" });
  await form.getByLabel("Title").fill(title);
  await form.getByLabel("Severity").selectOption("sev2");
  await form.getByLabel("What is happening").fill("requests_fallback above 1000 rows");
  await form.getByRole("button", { name: "Declare incident" }).click();
  await expect(operator.getByRole("status").filter({ hasText: "Incident declared as" })).toBeVisible();

  const managerContext = await browser.newContext();
  const manager = await managerContext.newPage();
  await signIn(manager, "manager");
  await open(manager, "/admin/history");
  await manager.getByLabel("Text").fill(word);
  await manager.getByRole("button", { name: "Filter" }).click();
  await expect(manager).toHaveURL(new RegExp(`q=${word}`));
  await expect(manager.getByRole("table").getByRole("link")).toHaveCount(1);
  await manager.getByRole("link", { name: title }).click();
  await expect(manager.getByRole("heading", { level: 1, name: title })).toBeVisible();
  await manager.getByLabel("Add a note to this incident").fill(`Customers told (${word})`);
  await manager.getByRole("button", { name: "Add note" }).click();
  // The timeline (the incident mode panel's checklist is the page's other table).
  await expect(manager.getByRole("table").first()).toContainText(`Customers told (${word})`);

  await open(operator, "/admin/history");
  await operator.getByLabel("Kind").selectOption("incident");
  await operator.getByLabel("Actor").fill(account("operator").email);
  await operator.getByRole("button", { name: "Filter" }).click();
  await expect(operator).toHaveURL(/kind=incident/);
  await expect(operator.getByRole("table").getByRole("link", { name: title })).toHaveCount(1);
  await operator.getByRole("link", { name: title }).click();
  await expect(operator.getByRole("table").first()).toContainText(`Customers told (${word})`);
  // The incident's status (the checklist's open items come after it).
  await expect(operator.getByText("open", { exact: true }).first()).toBeVisible();
  await expect(operator.getByTestId("incident-mode")).toContainText("Post-recovery checklist");

  await operatorContext.close();
  await managerContext.close();
});
