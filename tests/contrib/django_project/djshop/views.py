from django.db import transaction
from django.http import JsonResponse

from .models import Order
from .tasks import send_receipt


def checkout(request):
    """Creates an order and enqueues its receipt in one transaction; ``fail`` rolls both back."""
    try:
        with transaction.atomic():
            order = Order.objects.create(total=int(request.POST["total"]))
            result = send_receipt.enqueue(order.id)
            if request.POST.get("fail"):
                raise RuntimeError("card declined")
    except RuntimeError:
        return JsonResponse({"error": "card declined", "result": result.id}, status=402)
    return JsonResponse({"order": order.id, "result": result.id})
