/**
 * The training form's recipe buttons: each fills every field a recipe sets (architecture, image
 * size, epochs, ...) with that recipe's value; the admin can still change any of them. The
 * recipes come from the server (inference.parameters.TRAINING_RECIPES) as JSON in the page.
 */
const recipes = JSON.parse(document.getElementById("training-recipes").textContent);
const status = document.getElementById("recipe-status");

for (const button of document.querySelectorAll("button[data-recipe]")) {
  button.addEventListener("click", () => {
    const values = recipes[button.dataset.recipe] ?? {};
    for (const [name, value] of Object.entries(values)) {
      const field = document.querySelector(`form [name="${name}"]`);
      if (!field) continue;
      if (field.type === "checkbox") {
        field.checked = Boolean(value);
      } else {
        field.value = value === null ? "" : String(value);
      }
    }
    status.textContent = `Filled in: ${button.textContent.trim()}.`;
  });
}
