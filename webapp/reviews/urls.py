from django.urls import path

from webapp.reviews import labeling_views, views

app_name = "reviews"

urlpatterns = [
    path("", views.queue_list, name="list"),
    path("new/", views.queue_create, name="create"),
    path("<int:queue_id>/", views.queue_detail, name="detail"),
    path("<int:queue_id>/next/", views.queue_next, name="next"),
    path("<int:queue_id>/items/<int:item_id>/", views.item_label, name="item"),
    path("<int:queue_id>/items/<int:item_id>/criteria/<str:key>/", views.item_autosave, name="autosave"),
    path("<int:queue_id>/items/<int:item_id>/note/", views.item_note, name="note"),
    path("<int:queue_id>/items/<int:item_id>/submit/", views.item_submit, name="submit"),
    path("<int:queue_id>/items/<int:item_id>/skip/", views.item_skip, name="skip"),
    path("<int:queue_id>/items/<int:item_id>/pairwise/", views.item_pairwise, name="pairwise"),
    path("<int:queue_id>/items/<int:item_id>/gold/", labeling_views.item_gold, name="gold"),
    path("<int:queue_id>/items/<int:item_id>/ranking/", labeling_views.item_ranking, name="ranking"),
    path("<int:queue_id>/guidelines/", labeling_views.queue_guidelines, name="guidelines"),
]
urlpatterns += [
    path("agreement/", views.agreement, name="agreement"),
    path("agreement/disagreements/", views.agreement_disagreements, name="disagreements"),
    path("agreement/bias/", views.agreement_bias, name="bias"),
    path("agreement/bias/position-check/", views.agreement_position_check, name="position_check"),
    path("align/", views.align, name="align"),
    path("align/rejudge/", views.align_rejudge, name="rejudge"),
]
