import { expect, test } from "@playwright/test";
import { open, signIn, unique } from "./support/salvage";

// The post-recovery checklist on an incident's page: it refuses a resolution while a
// check is open, names the RCA owner as a check, and once resolved shows the checklist
// as it stood at the resolution (recorded with it), not measured again.
test("the checklist gates a resolution and is shown as recorded once resolved", async ({ page }) => {
  const title = unique("ClickHouse inserts failing");
  await signIn(page, "admin");
  await open(page, "/admin/history");
  await page.getByText("Declare an incident").click();
  const form = page.getByRole("form", { name: "Declare an incident" });
  await form.getByLabel("Title").fill(title);
  await form.getByLabel("Severity").selectOption("sev2");
  await form.getByLabel("What is happening").fill("inserts to requests time out");
  await form.getByRole("button", { name: "Declare incident" }).click();
  await page.getByRole("status").filter({ hasText: "Incident declared as" }).getByRole("link").click();
  await expect(page.getByRole("heading", { level: 1, name: title })).toBeVisible();

  const panel = page.getByTestId("incident-mode");
  const checklist = panel.getByTestId("checklist");
  const item = (label: string) => checklist.getByRole("row").filter({ hasText: label });
  await expect(panel).toContainText("resolving needs every check");
  await expect(item("Someone owns the root-cause analysis")).toContainText("no RCA owner named yet");
  await expect(item("The write freeze is lifted")).toContainText("ok");

  await panel.getByRole("textbox", { name: "RCA owner" }).fill("manager@salvage.demo");
  await panel.getByRole("button", { name: "Save owner" }).click();
  await expect(item("Someone owns the root-cause analysis")).toContainText("owned by manager@salvage.demo");

  // No backup was verified since the incident began, and nobody ticked the manual
  // items: resolving is refused, naming what is open.
  await page.getByRole("button", { name: "Mark resolved" }).click();
  await expect(page.getByRole("alert").filter({ hasText: "not every post-recovery check passes" })).toContainText(
    "A backup of each store verified since the incident began",
  );
  await expect(page.getByText("open", { exact: true }).first()).toBeVisible();

  // An admin resolves with the reason; the checklist stands as it was then.
  await page.getByLabel("Admins: resolve with the checklist incomplete because…").fill("verified backups follow tonight");
  await page.getByRole("button", { name: "Mark resolved" }).click();
  await expect(page.getByText("resolved", { exact: true }).first()).toBeVisible();
  await page.reload();
  await expect(panel).toContainText("as it stood at the resolution");
  await expect(item("Someone owns the root-cause analysis")).toContainText("owned by manager@salvage.demo");
  await expect(item("A backup of each store verified since the incident began")).toContainText("none yet of");
  await expect(panel.getByTestId("checklist-not-recorded")).toHaveCount(0);
  await expect(page.getByRole("button", { name: "Tick" })).toHaveCount(0);
  await expect(page.getByRole("table").first()).toContainText(`Resolved: ${title}`);
});
